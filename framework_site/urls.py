from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path

from runs.api import adapted_urls

from .api import api


def _public(patterns):
    """The API authenticates with keys, not sessions: exempt it from LoginRequiredMiddleware."""
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            _public(pattern.url_patterns)
        elif hasattr(pattern, "callback"):
            pattern.callback = login_not_required(pattern.callback)
    return patterns


api_urls, app_name, namespace = api.urls
api_urls = adapted_urls(api_urls)
urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", (_public(api_urls), app_name, namespace)),
    path("", include("builder.urls")),
    path("", include("runs.urls")),
]
