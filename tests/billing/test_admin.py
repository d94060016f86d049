"""The Django admin for the ledger: staff read and filter every entry; nobody adds, changes or deletes one."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import path, reverse

from callbroker.billing.models import LedgerEntry
from callbroker.network.models import Buyer, Campaign, TrackingNumber
from tests.billing.conftest import NOV, post

# Only the admin is mounted, so these tests do not depend on the carrier views importing cleanly.
urlpatterns = [path("admin/", admin.site.urls)]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]
CHANGELIST = "admin:billing_ledgerentry_changelist"


@pytest.fixture
def entries(make_billable, clock):
    billable = make_billable(revenue="45.00", payout="20.00")
    with clock.at(NOV):
        post(billable)
    return billable


def test_the_ledger_lists_entries_with_money_and_a_link_to_the_call(staff, entries):
    response = staff.get(reverse(CHANGELIST))
    assert response.status_code == 200
    page = response.content.decode()
    assert "$45.00" in page and "$20.00" in page and "Buyer charge" in page and "Publisher payout" in page
    assert reverse("admin:calls_call_change", args=[entries.pk]) in page
    assert "Add ledger entry" not in page
    assert 'name="action"' not in page  # no bulk actions, not even "delete selected"


@pytest.mark.parametrize("query", [
    "kind__exact=charge", "buyer__id__exact={buyer}", "publisher__id__exact={publisher}",
    "campaign__id__exact={campaign}", "created_at__year=2026&created_at__month=11", "q=CA",
])
def test_the_ledger_filters_by_kind_buyer_publisher_campaign_and_date(staff, entries, query):
    query = query.format(buyer=entries.buyer_id, publisher=entries.publisher_id, campaign=entries.campaign_id)
    response = staff.get(reverse(CHANGELIST) + "?" + query)
    assert response.status_code == 200
    shown = {entry.kind for entry in response.context["cl"].result_list}
    expected = {"kind__exact=charge": {"charge"}, "buyer": {"charge"}, "publisher": {"payout"}}
    key = next((k for k in expected if k in query), None)
    assert shown == (expected[key] if key else {"charge", "payout"})


def test_an_entry_is_shown_read_only(staff, entries):
    entry = LedgerEntry.objects.get(kind="charge")
    response = staff.get(reverse("admin:billing_ledgerentry_change", args=[entry.pk]))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["adminform"].form.fields == {}  # every field is read-only
    assert "billable call" in response.content.decode()


def test_nobody_adds_changes_or_deletes_an_entry(staff, entries):
    entry = LedgerEntry.objects.get(kind="charge")
    assert staff.get(reverse("admin:billing_ledgerentry_add")).status_code == 403
    assert staff.post(reverse("admin:billing_ledgerentry_change", args=[entry.pk]),
                      {"memo": "changed"}).status_code == 403
    assert staff.post(reverse("admin:billing_ledgerentry_delete", args=[entry.pk]),
                      {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.get(pk=entry.pk).memo == "billable call"


@pytest.mark.parametrize("model", ["buyer", "campaign"])
def test_a_buyer_or_campaign_with_entries_is_refused_on_its_delete_page_naming_the_entries(staff, entries, model):
    """The ledger protects them: the page named no entry, saying instead the user may not delete ledger
    entries (which nobody may), as if another account could."""
    obj = Buyer.objects.get(pk=entries.buyer_id) if model == "buyer" else Campaign.objects.get(pk=entries.campaign_id)
    TrackingNumber.objects.filter(campaign_id=entries.campaign_id).delete()  # those protect the campaign too
    response = staff.post(reverse(f"admin:network_{model}_delete", args=[obj.pk]), {"post": "yes"})
    page = response.content.decode()
    assert response.status_code == 200 and "protected related objects" in page
    assert "permission" not in page
    charge = LedgerEntry.objects.get(kind="charge")
    assert reverse("admin:billing_ledgerentry_change", args=[charge.pk]) in page  # named, with its link
    assert type(obj).objects.filter(pk=obj.pk).exists()
