"""Views that show the public API: Context, on_error, template, outgoing-call and cache fields."""

import os
import time

import requests
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from otel_canonical_logs import Context
from shop.helpers import price_with_tax, recommendations


def text(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, content_type="text/plain; charset=utf-8", status=status)


def checkout(request: HttpRequest) -> HttpResponse:
    """Application fields: app_cart_items, and app_pricing_time summed over two timed blocks."""
    cart = [1999, 2599, 899]
    Context.set("cart_items", len(cart))
    with Context.time("pricing"):
        subtotal = sum(cart)
    with Context.time("pricing"):
        total = price_with_tax(subtotal)
    return text(f"total={total}\n")


def context_probe(request: HttpRequest) -> HttpResponse:
    """Sets app_tag=?tag, naps ?nap= seconds (timed as app_nap_time), then reads its tag back."""
    tag = request.GET.get("tag", "")
    Context.set("tag", tag)
    with Context.time("nap"):
        time.sleep(min(float(request.GET.get("nap", "0")), 5.0))
    Context.set("tag_after", Context.get("tag"))
    if "odd" in request.GET:
        Context.set("Odd Key!\n", 'quote" back\\slash\nnewline')
        Context.set("object", Unprintable())
        Context.set("huge", 2**80)
        Context.set("queries", 999, namespace="db")  # a canonical field: ignored
        Context.set("plan", "pro", namespace="billing")
    return text(f"tag={tag}\n")


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


def partial(request: HttpRequest) -> HttpResponse:
    """A page that degrades: the recommendations helper fails twice, each a partial_failure event."""
    first = recommendations("Small Gods")
    second = recommendations("Dawn")
    return text(f"recommended={len(first) + len(second)}\n")


class ReceiptLine:
    def __init__(self, name: str, cents: int) -> None:
        self.name = name
        self.cents = cents

    def total(self) -> int:
        return price_with_tax(self.cents)


class Receipt:
    def __init__(self, lines: list[ReceiptLine], broken_heading: bool) -> None:
        self.lines = lines
        self.broken_heading = broken_heading

    def heading(self) -> str:
        if self.broken_heading:
            raise LookupError("no heading")
        return "Your receipt"


def receipt(request: HttpRequest) -> HttpResponse:
    """A template that includes a partial per line: 1 + 3 renders. ?broken=line makes the included
    partial's callable raise; ?broken=heading the top template's."""
    broken = request.GET.get("broken")
    lines = [ReceiptLine("tea", 400), ReceiptLine("cake", -1 if broken == "line" else 350)]
    lines.append(ReceiptLine("jam", 250))
    return render(request, "shop/receipt.html", {"receipt": Receipt(lines, broken == "heading")})


def http_out(request: HttpRequest) -> HttpResponse:
    """Two outgoing HTTP calls (requests) to $EXAMPLE_UPSTREAM_URL: http_out_calls=2."""
    upstream = os.environ.get("EXAMPLE_UPSTREAM_URL")
    if not upstream:
        return text("EXAMPLE_UPSTREAM_URL is not set\n", status=503)
    with requests.Session() as session:
        session.trust_env = False  # loopback only, whatever the proxy settings
        statuses = [session.get(upstream, timeout=5).status_code for _ in range(2)]
    return text(f"upstream={statuses}\n")


def cache(request: HttpRequest) -> HttpResponse:
    """A set and a get on the Redis cache ($EXAMPLE_REDIS_URL): cache_calls=2."""
    if "redis" not in caches:
        return text("EXAMPLE_REDIS_URL is not set\n", status=503)
    store = caches["redis"]
    store.set("example:greeting", "hello", timeout=60)
    return text(f"cached={store.get('example:greeting')}\n")
