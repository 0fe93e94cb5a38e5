"""shared.memory: freed heap pages go back to the OS."""
import os

import pytest

from shared.memory import _malloc_trim, release_free_heap


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm") or _malloc_trim() is None, reason="reads /proc, needs glibc")
def test_freed_heap_pages_are_returned():
    # 64 KB blocks come from the heap (under glibc's 128 KB mmap threshold); the last one, kept, pins the heap's
    # top, so that glibc cannot give the freed ones back by itself
    blocks = [bytearray(b"x" * 65536) for _ in range(1200)]  # ~75 MB, every page touched
    keep = blocks.pop()
    del blocks
    before = rss_mb()
    assert release_free_heap()
    assert before - rss_mb() > 40  # most of the 75 MB freed is no longer resident
    del keep
