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
    assert codes.get(403, 0) > 0, codes  # the swap did happen while routes answered


def test_ffmpeg_never_reads_a_video_swapped_in_after_its_check(tmp_path):
    """Thumbnails and contact sheets: ffmpeg reads the file opened and checked
    (safe_open.open_exactly), so a folder swapped for a link to an outside one
    after the path was resolved gives a refusal, never the outside picture."""
    import subprocess

    from dashboard.results.thumbnails import extract_one
    from dashboard.safe_open import OutsideRoot, resolve_inside

    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    for folder, size in ((root / "sub", "64x36"), (outside, "40x40")):  # 16:9 inside, square outside
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration=1",
                        "-c:v", "libx264", "-preset", "ultrafast", str(folder / "v.mp4")], check=True)
    real = resolve_inside(root, "sub/v.mp4")  # checked while sub is still the real folder
    os.rename(root / "sub", root / "sub.real")
    os.symlink(outside, root / "sub")
    try:
        with pytest.raises(OutsideRoot):
            extract_one(real, 5, 32, 25.0, tmp_path / "thumb.jpg")
    finally:
        os.unlink(root / "sub")
        os.rename(root / "sub.real", root / "sub")
    made = extract_one(real, 5, 32, 25.0, tmp_path / "thumb.jpg")
    size = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0",
                           str(made)], capture_output=True, text=True, check=True).stdout.strip()
    assert size == "32,18"  # the inside video's shape (the outside one is square)
