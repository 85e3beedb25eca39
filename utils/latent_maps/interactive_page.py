"""One self-contained HTML page of the 2-D maps (plotly, its JavaScript inlined: opens without network).

Hovering a point shows its file name, group and a thumbnail of the image; clicking a legend entry hides
or shows that group in every map; `latent_map.html#<file name>` opens with that file's point hovered
(a link to an outlier). The page writes what it drew into `<body>` attributes (`data-items`,
`data-plotted-points`, `data-hovered`, `data-errors`) so a headless browser can check it.
"""

import base64
import io
import json

import numpy as np

from utils.latent_maps.static_figure import group_colors

# Above this many points per map, WebGL (scattergl) instead of one SVG element per point keeps the page
# responsive; a 10,000-point SVG scatter takes seconds to redraw on every hover.
SVG_POINT_LIMIT = 5000

# Runs after plotly has drawn the figure; `{plot_id}` is the figure's div (filled in by plotly).
_PAGE_SCRIPT = """
var gd = document.getElementById('{plot_id}');
var thumbs = __THUMBS__;
var itemCount = __ITEMS__;
var errors = [];
window.addEventListener('error', function (e) { errors.push(String(e.message)); report(); });
var box = document.createElement('img');
box.id = 'latent-map-thumbnail';
box.style.cssText = 'position:fixed;display:none;width:128px;height:128px;image-rendering:pixelated;' +
    'border:2px solid #333;background:#fff;pointer-events:none;z-index:10';
document.body.appendChild(box);
function showPoint(name, index, x, y) {
    document.body.setAttribute('data-hovered', name);
    if (!thumbs.length) { return; }
    box.src = thumbs[index];
    box.style.left = x + 'px';
    box.style.top = Math.max(0, y) + 'px';
    box.style.display = 'block';
}
gd.on('plotly_hover', function (ev) {
    var p = ev.points[0];
    showPoint(p.text, p.customdata, ev.event.clientX + 16, ev.event.clientY - 140);
});
gd.on('plotly_unhover', function () { box.style.display = 'none'; });
function hoverNamed(name) {
    // plotly emits no hover event for a hover made by code, so the thumbnail is shown here (top left).
    for (var c = 0; c < gd.data.length; c++) {
        var j = gd.data[c].text.indexOf(name);
        if (j >= 0) {
            var t = gd._fullData[c];
            Plotly.Fx.hover(gd, [{curveNumber: c, pointNumber: j}], t.xaxis + t.yaxis);
            showPoint(name, gd.data[c].customdata[j], 8, 8);
            return;
        }
    }
}
function report() {
    var svgPoints = gd.querySelectorAll('.scatterlayer .point').length;
    var dataPoints = 0;
    gd.data.forEach(function (t) { if (t.visible !== 'legendonly') { dataPoints += t.x.length; } });
    document.body.setAttribute('data-items', itemCount);
    document.body.setAttribute('data-plotted-points', __SVG__ ? svgPoints : dataPoints);
    document.body.setAttribute('data-errors', errors.length);
}
report();
gd.on('plotly_afterplot', report);
if (window.location.hash.length > 1) { hoverNamed(decodeURIComponent(window.location.hash.slice(1))); }
"""


def png_data_uri(thumbnail: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(thumbnail).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _script_json(value) -> str:
    # A file name holding "</script>" would end the inline script early.
    return json.dumps(value).replace("</", "<\\/")


def write_interactive_map(
    path: str, coords_by_method: dict, names, groups, thumbs=None, title: str = ""
) -> str:
    """Write the page: one map per method side by side, one trace per group, hover thumbnails."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [str(n) for n in names]
    groups = np.asarray([str(g) for g in groups])
    methods = list(coords_by_method)
    svg = len(names) <= SVG_POINT_LIMIT
    trace_type = go.Scatter if svg else go.Scattergl
    colors = group_colors(groups)
    figure = make_subplots(rows=1, cols=len(methods), subplot_titles=[m.upper() for m in methods])
    for column, method in enumerate(methods, start=1):
        coords = np.asarray(coords_by_method[method])
        for group, color in colors.items():
            index = np.flatnonzero(groups == group)
            figure.add_trace(
                trace_type(
                    x=coords[index, 0].tolist(),
                    y=coords[index, 1].tolist(),
                    mode="markers",
                    name=group,
                    legendgroup=group,
                    showlegend=column == 1,
                    marker={"color": color, "size": 7 if len(names) < 2000 else 4, "opacity": 0.85},
                    customdata=index.tolist(),
                    text=[names[i] for i in index],
                    hovertemplate=f"%{{text}}<br>group: {group}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(
        title=title,
        template="plotly_white",
        legend={"title": {"text": "group (click to hide)"}},
        height=520,
        width=max(520, 460 * len(methods) + 160),
        hovermode="closest",
    )
    uris = [png_data_uri(t) for t in thumbs] if thumbs is not None else []
    script = (
        _PAGE_SCRIPT.replace("__THUMBS__", _script_json(uris))
        .replace("__ITEMS__", str(len(names)))
        .replace("__SVG__", "true" if svg else "false")
    )
    figure.write_html(path, include_plotlyjs=True, full_html=True, post_script=script)
    return path
