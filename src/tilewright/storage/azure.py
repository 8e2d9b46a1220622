"""Azure Blob Storage through adlfs: a connection string, an account key, a SAS token, or managed identity
(azure-identity's DefaultAzureCredential). Keys are `container/path`; canonical URLs are `az://container/path`.

Event Grid names blobs by their https URL; `key_from_url` accepts only URLs under the configured
account's blob endpoint (so an event cannot make the server fetch from anywhere else).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from adlfs import AzureBlobFileSystem
from azure.storage.blob import ContentSettings
from pydantic import SecretStr

from tilewright.config import Settings
from tilewright.errors import InputError, OutsideRootsError
from tilewright.storage.base import FileSystem, Storage
from tilewright.storage.errors import NotConfiguredError
from tilewright.storage.keys import clean_key

DEV_ACCOUNT = "devstoreaccount1"


def parse_connection_string(text: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in text.split(";"):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    return parts


def account_and_endpoint(settings: Settings) -> tuple[str, str]:
    """(account name, blob endpoint URL without a trailing slash) from the settings."""
    if settings.azure_connection_string is not None and settings.azure_connection_string.get_secret_value():
        parts = parse_connection_string(settings.azure_connection_string.get_secret_value())
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            return DEV_ACCOUNT, f"http://127.0.0.1:10000/{DEV_ACCOUNT}"
        account = parts.get("accountname", "")
        if parts.get("blobendpoint"):
            endpoint = parts["blobendpoint"].rstrip("/")
            if not account:
                account = (
                    urlsplit(endpoint).path.strip("/").split("/")[0]
                    or (urlsplit(endpoint).hostname or "").split(".")[0]
                )
            return account, endpoint
        if not account:
            raise InputError("TILEWRIGHT_AZURE_CONNECTION_STRING has no AccountName or BlobEndpoint")
        protocol = parts.get("defaultendpointsprotocol", "https")
        suffix = parts.get("endpointsuffix", "core.windows.net")
        return account, f"{protocol}://{account}.blob.{suffix}"
    if not settings.azure_account_name:
        raise NotConfiguredError(
            "Azure Blob Storage is not configured: set TILEWRIGHT_AZURE_CONNECTION_STRING or "
            "TILEWRIGHT_AZURE_ACCOUNT_NAME (with a key, a SAS token or TILEWRIGHT_AZURE_USE_IDENTITY)"
        )
    return settings.azure_account_name, f"https://{settings.azure_account_name}.blob.core.windows.net"


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def _filesystem(settings: Settings) -> FileSystem:
    kwargs: dict[str, Any] = {"skip_instance_cache": True, "max_concurrency": 4}
    if _secret(settings.azure_connection_string):
        kwargs["connection_string"] = _secret(settings.azure_connection_string)
    else:
        account, endpoint = account_and_endpoint(settings)
        kwargs["account_name"] = account
        if not endpoint.endswith(".blob.core.windows.net"):
            kwargs["account_host"] = urlsplit(endpoint).netloc
        if _secret(settings.azure_account_key):
            kwargs["account_key"] = _secret(settings.azure_account_key)
        elif _secret(settings.azure_sas_token):
            kwargs["sas_token"] = _secret(settings.azure_sas_token).lstrip("?")
        elif settings.azure_use_identity:
            # azure-identity (and msal) loads only for managed identity: a key, SAS or connection string never needs it
            from azure.identity.aio import DefaultAzureCredential

            kwargs["credential"] = DefaultAzureCredential()
        else:
            kwargs["anon"] = True
    return AzureBlobFileSystem(**kwargs)


class AzureStorage(Storage):
    """What differs: the account comes from the settings, https blob URLs are accepted (of that account only),
    and uploads carry a content type (a browser opening a tile gets `image/jpeg`)."""

    scheme = "az"

    @classmethod
    def from_settings(cls, settings: Settings, root: Path | None = None) -> AzureStorage:
        return cls(settings)

    def __init__(self, settings: Settings) -> None:
        self.account, self.endpoint = account_and_endpoint(settings)
        super().__init__(_filesystem(settings), settings, "")

    def describe(self) -> str:
        return f"az:// (account {self.account} at {self.endpoint})"

    def key_from_url(self, url: str) -> str:
        """`container/path` of an https blob URL of this account; OutsideRootsError for any other URL."""
        parts = urlsplit(url)
        endpoint = urlsplit(self.endpoint)
        base_path = endpoint.path.rstrip("/")
        if (parts.scheme.lower(), (parts.netloc or "").lower()) != (
            endpoint.scheme.lower(),
            endpoint.netloc.lower(),
        ) or not parts.path.startswith(base_path + "/"):
            raise OutsideRootsError(
                f"blob URL {url!r} is not in the configured storage account ({self.account}, {self.endpoint})"
            )
        key = clean_key(unquote(parts.path[len(base_path) + 1 :]))
        if "/" not in key:
            raise InputError(f"blob URL {url!r} names no blob inside a container")
        return key

    def _put_file(self, local: Path, key: str) -> None:
        content_type = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
        # a ContentSettings object, not a dict: older adlfs passes it to the SDK as is
        self.fs.put_file(
            str(local), self.full(key), content_settings=ContentSettings(content_type=content_type), max_concurrency=1
        )
