"""The backend table (pyspamd/storage/backends.py): what config validation reads and what
open_storage opens, so a backend added there is validated and opened the same way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pyspamd.config import StorageConfig
from pyspamd.storage import open_storage
from pyspamd.storage.backends import BACKENDS, storage_errors
from pyspamd.storage.base import BayesStore, FuzzyStore, StateStore, Storage


def _where(name: str) -> str:
    return f"here:{name}"


def test_every_backend_implements_every_interface_and_names_real_options() -> None:
    fields = set(StorageConfig.__dataclass_fields__)
    for backend in BACKENDS.values():
        cls = backend.load()
        assert issubclass(cls, Storage) and not cls.__abstractmethods__, backend.name
        for interface in (BayesStore, StateStore, FuzzyStore):
            assert issubclass(cls, interface)
        assert {option.name for option in backend.options} <= fields, backend.name


def test_the_table_opens_its_backend(tmp_path: Path) -> None:
    with open_storage(StorageConfig(path=str(tmp_path / "s.sqlite"))) as store:
        assert type(store) is BACKENDS["sqlite"].load()


def test_storage_errors_name_the_option_and_its_place() -> None:
    assert storage_errors(StorageConfig(), _where) == []
    errors = storage_errors(StorageConfig(backend="mysql", redis_url="localhost:6379",
                                          busy_timeout=-1, redis_timeout=0), _where)
    assert errors == [
        "here:backend: storage.backend must be \"sqlite\" or \"redis\", got 'mysql'",
        "here:busy_timeout: storage.busy_timeout must be above 0",
        "here:redis_url: storage.redis_url must start with redis://, rediss:// or unix://",
        "here:redis_timeout: storage.redis_timeout must be above 0",
    ]


def test_validation_loads_no_backend() -> None:
    # Config validation imports the table: neither numpy nor a backend may come with it.
    code = ("import sys, pyspamd.config, pyspamd.storage; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'redis') "
            "or m.startswith(('pyspamd.storage.base', 'pyspamd.storage.sqlite', "
            "'pyspamd.storage.redis'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
