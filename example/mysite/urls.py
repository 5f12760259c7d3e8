from django.urls import include, path

urlpatterns = [
    path("", include("shop.urls")),
    path("", include("shop.api_urls")),
]
