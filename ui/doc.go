// Package ui owns the operator's dashboard: the page served at /ui/, built
// into the binary, that draws the cluster from GET /v1/cluster/overview
// once a second — which nodes answer, who leads each group, every
// replica's term, indices and lag, live write rates and latencies, and the
// recent leadership changes.
//
// The page is plain HTML, CSS and JavaScript with no build step and
// nothing fetched from elsewhere, so it works on a machine with no
// internet and shows exactly what the binary serving it can tell.
package ui
