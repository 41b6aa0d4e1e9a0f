"""The fogmap dashboard: one document per browser session (a Bokeh directory app).

Bokeh runs this file for every new session. The read model and the image store come from
the registry key that :func:`fogmap.dashboard.server.start_dashboard` passed as
``sys.argv[1]``; there is nothing to run standalone with ``bokeh serve``.
"""

import sys

from bokeh.io import curdoc

from fogmap import dashboard
from fogmap.dashboard.panels import build
from fogmap.dashboard.sync import SessionSync

context = dashboard.lookup(sys.argv[1] if len(sys.argv) > 1 else "")
panels = build(context.view)
sync = SessionSync(context.view, panels)

doc = curdoc()
doc.title = "fogmap"
doc.add_root(panels.layout)
doc.add_periodic_callback(sync.update, 100)  # coalesced: at most ten pushes a second
