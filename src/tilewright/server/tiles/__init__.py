"""Tile serving: Deep Zoom (pre-built or dynamic), IIIF Image API 3, thumbnails, regions, associated images.

Every image is looked up by its id in the image records (routes_images / jobs.models.Image).
A published Deep Zoom pyramid is served as it is (`server/prebuilt.py`: local disk
`OUTPUT_ROOT/COLLECTION/ID/slide.dzi` first, then the object store `output_store`, manifest
first); until then (or for tiles it lacks) tiles are rendered from the source, read from the
best pyramid level for the scale asked (never from the full base for a low-resolution tile).

All libvips work runs on a bounded thread pool (`tile_threads`), never on the event loop:
a slow tile occupies one thread, the others keep being served. Encoded results are
cached (`TileCache`: in-process LRU, or Redis), open slides are kept (`SlideHandles`),
and every response carries an ETag computed from the request and the source file's size
and modification time, so `If-None-Match` gets a 304 without rendering anything.

The modules, from the bottom up:

- `urls`: the URL table (every tile URL shape written once: routes, fast path, links);
- `service`: `TileService`, the caches, open slides and threads of one app (made and closed by
  the app's lifespan), image records, cache keys and ETags;
- `render`: libvips work on an open slide, the slide's tile grid, cached responses;
- `deepzoom`, `image_api` (IIIF), `images` (thumbnail, associated images, regions, info): the
  answers, run on the tile pool;
- `routes`: the HTTP routes; `fastpath`: cached tiles answered before routing.
"""
