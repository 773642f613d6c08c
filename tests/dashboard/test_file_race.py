"""No route that serves a file can be raced into serving one outside its root
(issue 10, item 5): a folder is swapped for a link to an outside folder, in a
loop, while the routes are asked for a file in it; the outside file's content
must never come back."""
import os
import threading

import pytest

SECRET = "TOP-SECRET-OUTSIDE"


def swapping(folder, outside, stop):
    spare = folder.with_name(folder.name + ".real")
    while not stop.is_set():
        os.rename(folder, spare)
        os.symlink(outside, folder)
        os.unlink(folder)
        os.rename(spare, folder)


def race(client, urls, folder, outside, rounds=2000):
    stop = threading.Event()
    swapper = threading.Thread(target=swapping, args=(folder, outside, stop))
    swapper.start()
    codes = {}
    try:
        for _ in range(rounds):
            for url in urls:
                response = client.get(url)
                assert SECRET not in response.get_data(as_text=True), url
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                response.close()
    finally:
        stop.set()
        swapper.join()
    return codes


@pytest.fixture
def swapped(paths, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside


def test_the_log_routes_never_serve_an_outside_file(client, paths, swapped):
    sub = paths["logs"] / "sub"
    sub.mkdir(parents=True)
    (sub / "a.log").write_text("inside line\n")
    (swapped / "a.log").write_text(SECRET + "\n")
    urls = ["/api/logs/file?path=sub/a.log", "/logs/download?path=sub/a.log", "/logs?path=sub/a.log"]
    codes = race(client, urls, sub, swapped)
    assert codes.get(200, 0) > 0 and sum(codes.values()) == 3 * 2000
