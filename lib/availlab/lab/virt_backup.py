"""The guest-agent and backup calls of a Hypervisor (freeze, thaw, backups, checkpoints):
kept apart from virt.py, which holds the connection and every other call, so both stay short.
A mixin: `self` is the Hypervisor, with its `name`, `_domain` and guarded `_changing`."""

from __future__ import annotations

import base64
import json

import libvirt
import libvirt_qemu

from .virt_const import CHECKPOINT_REFUSED, errors

REDEFINE = libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE | libvirt.VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE_VALIDATE


class BackupCalls:
    name: str

    def _domain(self, name: str) -> libvirt.virDomain:
        raise NotImplementedError

    def _changing(self, name: str, action: str) -> libvirt.virDomain:
        raise NotImplementedError

    def fs_freeze(self, name: str) -> int:
        """Freeze the guest's filesystems through the guest agent (the VSS stand-in)."""
        with errors(self.name, f"freeze filesystems of VM {name}"):
            return self._changing(name, "freeze").fsFreeze()

    def fs_thaw(self, name: str) -> int:
        with errors(self.name, f"thaw filesystems of VM {name}"):
            return self._changing(name, "thaw").fsThaw()

    def set_agent_timeout(self, name: str, seconds: int) -> None:
        """How long libvirt waits for the guest agent: by default it blocks for good on a command
        such as fsFreeze, and a hung agent would hang the backup (and the freeze) with it."""
        with errors(self.name, f"set the guest-agent timeout of VM {name}"):
            self._changing(name, "set agent timeout").agentSetResponseTimeout(seconds, 0)

    def delete_checkpoint(self, name: str, checkpoint: str) -> bool:
        """Remove one checkpoint (a failed backup's); False if it does not exist."""
        dom = self._changing(name, "delete checkpoint")
        try:
            ck = dom.checkpointLookupByName(checkpoint, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
                return False
            with errors(self.name, f"look up checkpoint {checkpoint} of VM {name}"):
                raise
        with errors(self.name, f"delete checkpoint {checkpoint} of VM {name}"):
            ck.delete(0)
        return True

    def backup_begin(self, name: str, backup_xml: str, checkpoint_xml: str | None) -> None:
        """Start a backup (push or pull, as the XML says); the point in time is this call
        (copy-before-write from here on)."""
        with errors(self.name, f"begin backup of VM {name}"):
            self._changing(name, "begin backup").backupBegin(backup_xml, checkpoint_xml, 0)

    def checkpoints(self, name: str) -> list[str]:
        with errors(self.name, f"list checkpoints of VM {name}"):
            return [c.getName() for c in self._domain(name).listAllCheckpoints(0)]

    def agent_command(self, name: str, command: dict, timeout_s: int = 10) -> dict:
        """One guest-agent command (JSON) through libvirt, which syncs the channel first."""
        with errors(self.name, f"guest agent of VM {name}: {command.get('execute')}"):
            reply = libvirt_qemu.qemuAgentCommand(self._changing(name, "guest agent command"), json.dumps(command), timeout_s, 0)
        return json.loads(reply).get("return", {})

    def read_guest_file(self, name: str, path: str, count: int = 4096, timeout_s: int = 10) -> str:
        """A small file of the guest (its text, stripped), read through the agent: no process
        is started in the guest, and the handle is closed whatever happens."""
        fh = self.agent_command(name, {"execute": "guest-file-open", "arguments": {"path": path}}, timeout_s)
        try:
            got = self.agent_command(name, {"execute": "guest-file-read", "arguments": {"handle": fh, "count": count}},
                                     timeout_s)
        finally:
            self.agent_command(name, {"execute": "guest-file-close", "arguments": {"handle": fh}}, timeout_s)
        return base64.b64decode(got.get("buf-b64", "")).decode().strip()

    def set_copy_speed(self, name: str, disk: str, mib_s: int) -> None:
        """Cap a running backup's copy (0: no cap). libvirt's backup XML has no bandwidth, but the
        job is the disk's block job. QEMU counts the disk's whole virtual size, unallocated
        clusters too, so a full backup of a 3 GiB disk at 300 MiB/s takes about 10 s."""
        with errors(self.name, f"set the backup speed of VM {name}"):
            self._changing(name, "backup speed").blockJobSetSpeed(disk, mib_s, 0)

    def checkpoint_xml(self, name: str, checkpoint: str) -> str:
        """A checkpoint's description, kept with its backup set: the checkpoint's metadata lives
        in one host's libvirtd, and the VM takes only the bitmap (in its qcow2) when it moves."""
        with errors(self.name, f"read checkpoint {checkpoint} of VM {name}"):
            ck = self._domain(name).checkpointLookupByName(checkpoint, 0)
            # without the <domain> it was taken of: that carries the VM's UUID, which a VM restored
            # or created again under the same name does not share (libvirt then refuses it outright)
            return ck.getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_NO_DOMAIN)

    def redefine_checkpoint(self, name: str, xml: str) -> None:
        """Give this host's libvirtd a checkpoint the VM brought in its disk's bitmap (after a
        live migration); VALIDATE has libvirt check that the bitmap really is in the disk."""
        dom = self._changing(name, "redefine checkpoint")
        with errors(self.name, f"redefine a checkpoint of VM {name}", codes=CHECKPOINT_REFUSED):
            dom.checkpointCreateXML(xml, REDEFINE)

    def block_pull(self, name: str, disk: str, mib_s: int = 0) -> None:
        """Start copying a disk's backing chain into its top image (instant restore's move-off)."""
        with errors(self.name, f"start the block pull of VM {name}"):
            self._changing(name, "block pull").blockPull(disk, mib_s, 0)

    def block_job(self, name: str, disk: str) -> dict | None:
        """The disk's running block job ({'type', 'bandwidth', 'cur', 'end'}), None when none runs."""
        with errors(self.name, f"read the block job of VM {name}"):
            return self._domain(name).blockJobInfo(disk, 0) or None

    def block_job_abort(self, name: str, disk: str) -> None:
        with errors(self.name, f"abort the block job of VM {name}"):
            self._changing(name, "abort block job").blockJobAbort(disk, 0)
