"""What a sync needs at hand: the config, the database engine and the field cipher.

Built once per process (CLI command, web app, worker) and shared; nothing here knows Flask.
"""
from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine

from records.crypto import FieldCipher
from records.db import make_engine
from sync.config import Config, ConfigError


class Runtime:
    def __init__(self, config: Config) -> None:
        self.config = config

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.config.database)

    @cached_property
    def cipher(self) -> FieldCipher:
        if not self.config.secret_key:
            raise ConfigError(
                "no secret key: set DUALLINE_SECRET_KEY or `secret_key` in the config "
                "(it encrypts ID numbers and mobiles; keep it safe and never change it)"
            )
        try:
            return FieldCipher(self.config.secret_key)
        except ValueError as exc:
            raise ConfigError(f"secret_key: {exc}") from None
