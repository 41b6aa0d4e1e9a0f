"""Request dependencies: the runtime, the caller, and role checks.

Everything here and in the routes is ``async``: the store calls take well under a
millisecond, and running them on the event loop avoids a thread hop per request, whose
lock and GIL contention cost hundreds of ms under a hundred concurrent annotators.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from fogmap.labeling.service import User
from fogmap.runtime.bootstrap import Runtime


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def current_user(request: Request, runtime: RuntimeDep) -> User:
    user = runtime.labeling.authenticate(bearer(request))
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid token",
                            headers={"WWW-Authenticate": "Bearer"})
    return user


UserDep = Annotated[User, Depends(current_user)]


def require(*roles: str) -> Callable[[User], Awaitable[User]]:
    async def check(user: UserDep) -> User:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {user.role!r} may not do this; needs {', '.join(roles)}")
        return user

    return check


Labeler = Annotated[User, Depends(require("annotator", "expert", "reviewer", "admin"))]
Reviewer = Annotated[User, Depends(require("expert", "reviewer", "admin"))]
Admin = Annotated[User, Depends(require("admin"))]
Ops = Annotated[User, Depends(require("ops", "admin"))]
