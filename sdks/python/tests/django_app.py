"""A minimal Django project for test_django.py: settings, views and URLs in one module."""

from __future__ import annotations

import os
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path

from bitacora import Bitacora
from bitacora.integrations.django import audit

CLIENT: dict[str, Bitacora] = {}


def actor(request: HttpRequest) -> dict[str, Any] | None:
    """The configured `BITACORA["actor"]`: the user the view authenticated (as DRF does,
    inside the view), so it must be read lazily."""
    return getattr(request, "api_user", None)


def role_change(request: HttpRequest, user_id: str) -> JsonResponse:
    request.api_user = {"id": "42", "name": "admin"}  # type: ignore[attr-defined]
    event_id = CLIENT["c"].log(
        os.environ["DJANGO_TEST_ACTION"],
        severity="critical",
        target={"type": "user", "id": user_id},
        changes=[{"field": "role", "old": "user", "new": "admin"}],
    )
    return JsonResponse({"id": event_id})


async def login_failed(request: HttpRequest) -> JsonResponse:
    event_id = CLIENT["c"].log(
        os.environ["DJANGO_TEST_ACTION"] + "_failed",
        outcome="failure",
        metadata={"username": "juan"},
    )
    return JsonResponse({"id": event_id})


def disable(request: HttpRequest, device_id: str) -> JsonResponse:
    return JsonResponse({"ok": True})


def urls() -> list[Any]:
    return [
        path("users/<user_id>/role", role_change),
        path("login", login_failed),
        path(
            "devices/<device_id>/disable",
            audit(
                CLIENT["c"],
                os.environ["DJANGO_TEST_ACTION"] + ".device_disable",
                target=lambda request, device_id: {"type": "device", "id": device_id},
            )(disable),
        ),
    ]


urlpatterns: list[Any] = []
