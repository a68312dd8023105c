"""The credentials the sandbox CRMs accept, made up per world and kept with its state.

They are fake but treated as real secrets: they go to the settings file that
``--write-config`` writes (mode 0600) and nowhere else.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from detente.sandbox.store import World


@dataclass(frozen=True)
class SandboxCredentials:
    sf_client_id: str
    sf_client_secret: str
    sf_username: str
    sf_password: str
    sf_refresh_token: str
    sf_jwt_private_key: str  # PEM; the connected app's certificate holds its public half
    hs_token: str

    def sf_jwt_public_key(self) -> bytes:
        key = serialization.load_pem_private_key(self.sf_jwt_private_key.encode(), password=None)
        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @classmethod
    def create(cls) -> SandboxCredentials:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(
            sf_client_id="3MVG9sandbox" + secrets.token_hex(16),
            sf_client_secret=secrets.token_hex(32),
            sf_username="integration@detente-sandbox.example",
            sf_password=secrets.token_urlsafe(18),
            sf_refresh_token="5Aep861sandbox" + secrets.token_urlsafe(40),
            sf_jwt_private_key=pem,
            hs_token="pat-na1-" + secrets.token_hex(4) + "-" + secrets.token_hex(16),
        )

    @classmethod
    def for_world(cls, world: World) -> SandboxCredentials:
        """The world's credentials, created on first use and persisted with it."""
        stored = world.get_meta("credentials")
        if stored:
            return cls(**stored)
        creds = cls.create()
        world.set_meta("credentials", asdict(creds))
        return creds

    def secret_values(self) -> list[str]:
        return [self.sf_client_secret, self.sf_password, self.sf_refresh_token,
                self.sf_jwt_private_key, self.hs_token]
