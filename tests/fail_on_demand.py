"""A fake repository's way to fail on demand: `fail_next` is raised by the next call (of `fail_on`, when named);
`called` lists the methods called, in order."""

from __future__ import annotations


class FailOnDemand:
    fail_next: Exception | None = None
    fail_on: str | None = None  # the method `fail_next` waits for (None: whichever is called next)

    def _call(self, name: str) -> None:
        """Record the call; raise `fail_next` if it is this call's turn."""
        self.__dict__.setdefault("called", []).append(name)
        if self.fail_next is not None and self.fail_on in (None, name):
            error, self.fail_next, self.fail_on = self.fail_next, None, None
            raise error
