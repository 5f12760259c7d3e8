from django.urls import path

from shop import api_views, views

urlpatterns = [
    path("checkout/", api_views.checkout, name="checkout"),
    path("context/", api_views.context_probe, name="context-probe"),
    path("partial/", api_views.partial, name="partial"),
    path("receipt/", api_views.receipt, name="receipt"),
    path("http-out/", api_views.http_out, name="http-out"),
    path("cache/", api_views.cache, name="cache"),
    # Answered by the plain /ok/ view; the example's failing enricher acts on this path only.
    path("enrich-boom/", views.ok, name="enrich-boom"),
]
