"""The pipeline's access to users and devices in Firestore (layout in herald/local/seed.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.cloud import firestore

from herald.clients import firestore_client
from herald.contracts import Channel, utc_now_iso
from herald.settings import Settings


ADDRESS_FIELDS = {Channel.SMS: "phone", Channel.EMAIL: "email"}
"""The user document field holding each addressed channel's address (push addresses devices)."""

PROVIDER_OPT_OUTS = "provider_opt_outs"
"""User document field: {channel: {"source": provider, "reason": the provider's word, "at": ISO
time}}, one entry per channel whose provider reported the recipient's opt-out."""


def provider_opt_out(user: dict[str, Any], channel: Channel) -> dict[str, Any] | None:
    """The opt-out a provider reported for `channel` on this user document, if any."""
    return (user.get(PROVIDER_OPT_OUTS) or {}).get(channel.value)


class Directory:
    """Batched reads (one `get_all` for users, with device listings in parallel) and the one write
    the pipeline makes: disabling a device whose token the provider says is dead."""

    def __init__(self, settings: Settings) -> None:
        self._client = firestore_client(settings)
        self._pool = ThreadPoolExecutor(max_workers=16)

    def _user(self, user_id: str) -> firestore.DocumentReference:
        return self._client.collection("users").document(user_id)

    def users_and_devices(self, user_ids: list[str], push_user_ids: list[str]
                          ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
        """The documents of `user_ids` that exist, and the devices of `push_user_ids` (an unknown
        user has none), read at the same time: on the DirectRunner the runner's one thread waits
        for these reads, so they overlap rather than follow one another."""
        users = self._pool.submit(self._users, user_ids)
        devices = dict(zip(push_user_ids, self._pool.map(self._devices, push_user_ids)))
        return users.result(), devices

    def _users(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        snapshots = self._client.get_all([self._user(u) for u in user_ids])
        return {snap.id: snap.to_dict() for snap in snapshots if snap.exists}

    def _devices(self, user_id: str) -> dict[str, dict[str, Any]]:
        return {doc.id: doc.to_dict() for doc in self._user(user_id).collection("devices").stream()}

    def users_with_address(self, channel: Channel, address: str) -> list[str]:
        """Ids of the users whose `channel` address is `address` (an equality query on a field
        Firestore indexes by itself). How a provider-reported opt-out finds its users: providers
        opt out an address (SendGrid's suppression lists, Twilio's STOP block of a number), so
        every user who has it is refused by the provider from then on."""
        query = self._client.collection("users").where(
            filter=firestore.FieldFilter(ADDRESS_FIELDS[channel], "==", address))
        return sorted(snapshot.id for snapshot in query.stream())

    def record_opt_out(self, user_id: str, channel: Channel, source: str, reason: str) -> None:
        """A provider reported that the user opted out of `channel` (Twilio error 21610 or a STOP
        reply; SendGrid unsubscribe, group_unsubscribe, spamreport): later notifications on that
        channel are suppressed (`provider_opted_out`) without calling the provider. A merge, so
        an unknown user gets no document of its own beyond this field."""
        self._user(user_id).set({PROVIDER_OPT_OUTS: {channel.value: {
            "source": source, "reason": reason, "at": utc_now_iso()}}}, merge=True)

    def disable_device(self, user_id: str, device_id: str, reason: str) -> None:
        """Token hygiene: later notifications skip the device (it reads as `device_disabled`),
        and the reason stays on the document for support and for the app to re-register."""
        self._user(user_id).collection("devices").document(device_id).update({
            "notification_enabled": False, "disabled_reason": reason, "disabled_at": utc_now_iso()})
