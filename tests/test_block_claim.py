"""Two labs on one machine never share a loopback block (net.vnet.claim_block).

Binding guarded only the start: a lab that rebinds a service mid-run (Stop-/Start-Service in its
timeline) found its ports taken by another lab that had started on the same block meanwhile
("address already in use" in the middle of a run). A lab now holds its block for its lifetime;
another lab moves to a free block at once, and what a run writes does not depend on the block.
"""

from __future__ import annotations

from pathlib import Path

import labsim
from labsim.net.vnet import DEFAULT_BLOCK, claim_block

SCENARIO = "svc-transport-stopped"  # its timeline stops and starts a service: a mid-run rebind


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_claimed_block_is_refused_until_released():
    first = claim_block(241)
    assert first is not None
    try:
        assert claim_block(241) is None  # another lab (here: another claim) holds it
    finally:
        first.release()
    again = claim_block(241)
    assert again is not None
    again.release()


def test_a_lab_moves_off_a_block_another_lab_holds_and_writes_the_same_files(tmp_path):
    held = claim_block(DEFAULT_BLOCK)
    try:
        moved = labsim.run(SCENARIO, out=tmp_path / "moved")
    finally:
        if held is not None:
            held.release()
    own = labsim.run(SCENARIO, out=tmp_path / "own")
    assert moved.ok and own.ok
    assert _tree(tmp_path / "moved") == _tree(tmp_path / "own")
