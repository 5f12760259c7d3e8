from django.conf import settings
from django.urls import include, path

urlpatterns = [
    path("", include("shop.urls")),
    path("", include("shop.api_urls")),
]

if "django.contrib.admin" in settings.INSTALLED_APPS:
    from django.contrib import admin

    urlpatterns.append(path("admin/", admin.site.urls))
