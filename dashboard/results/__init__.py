"""The results view: STEP3's results read for the pages (catalog), the scene
rule, reviews, timecodes, thumbnails, and the exports (one module each under
``exports/``). Flask-free: the web layer is dashboard/web/videos.py."""
