"""A fault in the database: the server ends every workload connection at once (what a DBA's
KILL, a failover or a restart does to clients). Expected: every error the clients get is
recognised as a lost connection by the database's profile (a write then is indeterminate, never
failed), every client reconnects and goes on, no acknowledged write is lost. It checks the
dialect's SQLSTATE mapping against the real ODBC driver."""

from __future__ import annotations

from ..clients.sql import run_sql
from ..dialects import dialect
from ..errors import AvailLabError
from ..history import now_ns
from ..progress import step
from .nemesis import Fault, Scene, _repairing, frame, registered


@registered
class KillDbSessions(Fault):
    name, family = "kill-db-sessions", "db"

    def invoke(self, sc: Scene) -> None:
        d = dialect(sc.st.vms[sc.vm].database)
        ids = [int(r[0]) for r in run_sql(sc.st, sc.vm, d.other_sessions)]
        errors: list[str] = []
        killed = 0
        for i in ids:
            try:
                run_sql(sc.st, sc.vm, d.kill_session.format(id=i))
                killed += 1
            except AvailLabError as exc:  # a session that ended by itself meanwhile
                errors.append(str(exc))
        sc.details.update(database=d.name, sessions=len(ids), killed=killed, errors=errors[:3])
        if not killed:
            step(f"fault {self.name}: no session was ended ({len(ids)} found)")

    def struck(self, sc: Scene, ok: bool, err: str) -> tuple[bool, str]:
        n, found = sc.details.get("killed", 0), sc.details.get("sessions", 0)
        return (True, f"{n} of {found} workload sessions ended by the server") if n else (
            False, f"no session was ended ({found} found{': ' + err if err else ''})")


@frame("db")
def _in_the_database(fault: Fault, sc: Scene) -> tuple[str, int | None, bool, str]:
    d = dialect(sc.st.vms[sc.vm].database)
    step(f"fault {fault.name}: {d.name} on {sc.vm} ends every workload session")
    with _repairing(fault, sc):
        injected = now_ns()
        fault.invoke(sc)
    killed, errors = sc.details["killed"], sc.details.pop("errors")
    return (f"{d.name}: kill {sc.details['sessions']} sessions", injected, killed > 0,
            "; ".join(errors) if not killed else "")
