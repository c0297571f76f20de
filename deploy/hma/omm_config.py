"""HMA (OpenMediaMatch) configuration for the labeler's compose stack, loaded by HMA through `OMM_CONFIG`.

HMA reads this with Flask's `config.from_envvar`, so every UPPERCASE global is a setting, and then applies
`OMM_<NAME>` environment overrides (JSON-parsed: `OMM_TASK_FETCHER=true`). One gunicorn worker runs every role
and the background jobs: HMA starts its scheduler in each gunicorn worker, so a second worker would run a second
indexer against the same database (hma.md §2). Scale HMA by splitting roles into separate services instead.
"""

import os

from OpenMediaMatch.storage.postgres.impl import DefaultOMMStore
from threatexchange.content_type.photo import PhotoContent
from threatexchange.content_type.video import VideoContent
from threatexchange.exchanges.impl.fb_threatexchange_api import FBThreatExchangeSignalExchangeAPI
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.impl.static_sample import StaticSampleSignalExchangeAPI
from threatexchange.exchanges.impl.stop_ncii_api import StopNCIISignalExchangeAPI
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal

# compose.yaml sets OMM_DATABASE_URI (HMA's own PostgreSQL, `hma-db`); this default only names the shape.
DATABASE_URI = os.environ.get("OMM_DATABASE_URI", "postgresql+psycopg2://hma@hma-db/media_match")

# Production: no /dev endpoints. HMA has no authentication of its own: never publish port 5100 beyond the host.
PRODUCTION = True
UI_ENABLED = False
ROLE_HASHER = True  # /h/hash: lets operators hash an image to bank it
ROLE_MATCHER = True  # /m/lookup: what the labeler's matcher calls
ROLE_CURATOR = True  # /c/…: banks and bank content (`labeler bank …` talks to it)

# Background jobs: rebuild the index from the banks, and keep the matcher's in-memory copy fresh.
TASK_INDEXER = True
TASK_INDEX_CACHE = True
TASK_INDEXER_INTERVAL_SECONDS = 60
TASK_INDEX_CACHE_INTERVAL_SECONDS = 30
INDEX_CACHE_MAX_STALE_SEC = 65  # /status answers 503 INDEX-STALE past this; /status/live stays 200
# Pulling from exchanges (NCMEC, StopNCII, ThreatExchange) needs credentials: OMM_TASK_FETCHER=true to enable.
TASK_FETCHER = False
TASK_FETCHER_INTERVAL_SECONDS = 240

# The labeler hashes images itself and looks hashes up, so HMA never downloads URLs; keep the cap small anyway.
MAX_REMOTE_FILE_SIZE = 20 * 1024 * 1024

STORAGE_IFACE_INSTANCE = DefaultOMMStore(
    signal_types=[PdqSignal, VideoMD5Signal],
    content_types=[PhotoContent, VideoContent],
    exchange_types=[
        StaticSampleSignalExchangeAPI,
        FBThreatExchangeSignalExchangeAPI,
        NCMECSignalExchangeAPI,
        StopNCIISignalExchangeAPI,
    ],
)

# Without a dictConfig HMA's INFO logs (indexer, index cache) are silent.
FLASK_LOGGING_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": {"format": "[%(asctime)s] %(levelname)s in %(module)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
}
