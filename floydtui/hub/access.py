"""Hub tokens and access errors.

The token is whatever huggingface_hub finds (HF_TOKEN, or the file `hf auth login` writes);
floydtui never stores it, passes it around or prints it, and `redact` scrubs it from any text
that came from elsewhere (a server message, an exception) before a user or a log sees it.

A failed hub call becomes one of a few messages, each with what to do: not logged in,
licence not accepted, no such repo, revision or file, no network, the hub unavailable.
"""

from __future__ import annotations

import os
import re

from floydtui.errors import FloydError, Problem

HUB = "https://huggingface.co"
LOGIN = "run `hf auth login` (older installs: `huggingface-cli login`) or set HF_TOKEN to a read token"
_TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")  # the shape of a user access token


def hub_token() -> str | None:
    """The token huggingface_hub would send, or None when not logged in."""
    from huggingface_hub import get_token

    try:
        return get_token()
    except Exception:  # an OIDC exchange or a broken token file: treat as not logged in
        return None


def redact(text: str) -> str:
    """`text` with the current hub token, HF_TOKEN and anything shaped like a token replaced by ***."""
    secrets = {os.environ.get(name, "") for name in _TOKEN_ENV} | {hub_token() or ""}
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _TOKEN_RE.sub("***", text)


def licence_url(repo_id: str) -> str:
    return f"{HUB}/{repo_id}"


def access_problem(exc: BaseException, repo_id: str, filename: str = "") -> Problem | None:
    """The user-facing problem for a failed hub call, or None when `exc` is not a hub failure."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    what = f"{repo_id}/{filename}" if filename else repo_id
    where = f"model {repo_id}"
    logged_in = hub_token() is not None
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError):
        if not logged_in:
            return Problem(f"{repo_id} is a gated model: downloading it needs a Hugging Face login", where=where,
                           key="pretrained_model_name_or_path",
                           hint=f"{LOGIN}; then accept the licence at {licence_url(repo_id)}")
        return Problem(f"your Hugging Face account has not accepted the licence of {repo_id}", where=where,
                       key="pretrained_model_name_or_path",
                       hint=f"open {licence_url(repo_id)}, log in as the token's account and accept the licence "
                            "(DeepFloyd grants access at once); a fine-grained token also needs read access "
                            "to public gated repos")
    if isinstance(exc, RepositoryNotFoundError):
        hint = "check pretrained_model_name_or_path: DeepFloyd's are DeepFloyd/IF-I-M-v1.0, IF-I-L-v1.0, " \
               "IF-I-XL-v1.0, IF-II-M-v1.0, IF-II-L-v1.0"
        return Problem(f"there is no model {repo_id} on the hub" +
                       ("" if logged_in else " (or it is private and you are not logged in)"),
                       where=where, key="pretrained_model_name_or_path",
                       hint=hint + ("" if logged_in else f"; for a private repo, {LOGIN}"))
    if isinstance(exc, RevisionNotFoundError):
        return Problem(f"{repo_id} has no revision by that name", where=where, key="revision",
                       hint="set revision to a branch, tag or commit of the repo (usually \"main\")")
    if isinstance(exc, HfHubHTTPError) and status == 401:
        return Problem(f"the hub refused your token for {repo_id}" if logged_in
                       else f"{repo_id} needs a Hugging Face login", where=where,
                       hint=("your token is invalid or expired: " if logged_in else "") + LOGIN)
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return Problem(f"{what} does not exist on the hub", where=where, key="pretrained_model_name_or_path",
                       hint="the repo does not have the layout of a diffusers DeepFloyd IF model")
    if isinstance(exc, OfflineModeIsEnabled):
        return offline_problem(repo_id, [filename] if filename else [])
    if isinstance(exc, (httpx2.TransportError, LocalEntryNotFoundError, ConnectionError, TimeoutError)):
        return Problem(f"cannot reach the Hugging Face hub to download {what}: no network", where=where,
                       hint="check the connection (and HTTPS_PROXY behind a proxy), then rerun: finished files "
                            "stay in the cache; or use the cache alone with HF_HUB_OFFLINE=1 once the files are there")
    if isinstance(exc, HfHubHTTPError):
        return Problem(f"the hub answered HTTP {status} for {what}: {redact(str(exc).splitlines()[0])}",
                       where=where, hint="the hub may be down or rate-limiting: wait a little and rerun "
                                         "(finished files stay in the cache)")
    return None


def is_unreachable(exc: BaseException) -> bool:
    """The hub could not be asked (offline mode, no network, the hub down): it may work later."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    status = getattr(getattr(exc, "response", None), "status_code", None) or 0
    return isinstance(exc, (httpx2.TransportError, LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError,
                            TimeoutError)) or (isinstance(exc, HfHubHTTPError) and status >= 500)


def access_error(exc: BaseException, repo_id: str, filename: str = "") -> FloydError | None:
    """`access_problem` as a raisable FloydError."""
    problem = access_problem(exc, repo_id, filename)
    return FloydError([problem]) if problem else None


def offline_problem(repo_id: str, missing: list[str], cache: str = "") -> Problem:
    """HF_HUB_OFFLINE=1 and the cache lacks files: name the repo and the files."""
    first = missing[0] if missing else "its files"
    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
    return Problem(f"HF_HUB_OFFLINE=1 and {repo_id}: {first}{more} is not in the hub cache",
                   where=cache or f"model {repo_id}", key="pretrained_model_name_or_path",
                   hint=f"run once with network (unset HF_HUB_OFFLINE) to download it, or copy the "
                        f"models--{repo_id.replace('/', '--')} folder of a hub cache that has it (`hf download "
                        f"{repo_id}` fills one) into this one (HF_HUB_CACHE)")
