"""Settings of the tile server and the web page (group "Serving"): mixed into `Settings`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tilewright.config.groups import SERVING
from tilewright.config.urls import CacheUrl, PublicUrl, RootPath, TrustedProxies


class ServingSettings(BaseModel):
    cache_url: CacheUrl = Field(
        "",
        description="Redis URL of the tile cache (`redis://HOST:6379/1`); empty: an "
        "in-process LRU. If Redis cannot be reached the server warns once and caches in memory "
        "until it answers again.",
        json_schema_extra=SERVING,
    )
    cache_bytes: int = Field(
        256 * 2**20,
        ge=0,
        description="Size of the in-process tile cache in bytes (0: none).",
        json_schema_extra=SERVING,
    )
    cache_ttl_seconds: int = Field(
        7 * 86400, ge=0, description="Expiry of tiles kept in Redis (0: never).", json_schema_extra=SERVING
    )
    slide_handles: int = Field(
        32,
        ge=1,
        description="Slides the tile server keeps open (least recently used closed first).",
        json_schema_extra=SERVING,
    )
    tile_passthrough: bool = Field(
        True,
        description="Serve a source's stored JPEG tile as it is when a request "
        "asks for exactly that tile (no decode, no re-encode; its quality is the file's).",
        json_schema_extra=SERVING,
    )
    tiles_follow_source: bool = Field(
        True,
        description="Dynamic tiles follow a tiled source's own grid: the dynamic "
        "`.dzi` uses its tile size with no overlap and `info.json` its tile size (false: "
        "`DZI_TILE_SIZE`/`DZI_OVERLAP` and `IIIF_TILE_SIZE`).",
        json_schema_extra=SERVING,
    )
    tile_threads: int = Field(
        16,
        ge=1,
        description="Threads rendering tiles; libvips work never runs on the event loop.",
        json_schema_extra=SERVING,
    )
    cors_origins: list[str] = Field(
        ["*"],
        description="Origins allowed to GET tiles, info.json and metadata "
        "from other sites (CORS); empty: no CORS headers.",
        json_schema_extra=SERVING,
    )
    tile_cache_control: str = Field(
        "public, max-age=86400",
        description="`Cache-Control` header of tiles, thumbnails, regions and associated images (Deep Zoom "
        "tiles of an image not yet published get `no-cache`: their grid changes when it is).",
        json_schema_extra=SERVING,
    )
    max_region_pixels: int = Field(
        4096 * 4096,
        ge=1,
        description="Largest output (width x height) of a `/region`, IIIF or thumbnail request; larger ones get a 400.",
        json_schema_extra=SERVING,
    )
    public_url: PublicUrl = Field(
        "",
        description="Scheme, host and path prefix of every absolute URL the server writes (IIIF `info.json` "
        "`id`, ...), e.g. `https://example.org/tiles`; empty: taken from the request (its `Host` header, "
        "or the forwarded headers of a trusted proxy).",
        json_schema_extra=SERVING,
    )
    root_path: RootPath = Field(
        None,
        description="Path prefix the app is mounted under behind a proxy that strips it (`/tiles`); "
        "links and the web page's URLs start with it (default: the path of `PUBLIC_URL`, else none).",
        json_schema_extra=SERVING,
    )
    forwarded_allow_ips: TrustedProxies = Field(
        [],
        description="Addresses or networks of trusted reverse proxies (JSON list, `*`: any): only their "
        "`X-Forwarded-For`/`-Proto`/`-Host`/`-Prefix` and `Forwarded` headers are used; empty: ignored from anyone.",
        json_schema_extra=SERVING,
    )
    openseadragon_dir: Path | None = Field(
        None,
        description="Folder with `openseadragon.min.js` and `images/` "
        "for the web page's viewer (default: `build/openseadragon` of the "
        "source tree, put there by `make`).",
        json_schema_extra=SERVING,
    )

    def resolved_root_path(self) -> str:
        """The path prefix the app is mounted under: `root_path`, else the path of `public_url`, else ""."""
        if self.root_path is not None:
            return self.root_path
        return urlsplit(self.public_url).path.rstrip("/")
