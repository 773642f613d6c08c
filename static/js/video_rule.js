/* The official scene rule (workflow_scripts/step3/shots/scenes.py; the same as
   dashboard/results/scene_rule.py), on the sparse probabilities the API sends:
   [[frame (0-based), p], ...] for every frame above `sparse_min`, so the rule
   is exact for any threshold >= sparse_min. A run of consecutive frames above
   the threshold is one transition: the scene before it ends on the run's first
   frame, the next starts after the run. Returns 1-based inclusive [in, out]. */
"use strict";

function sceneRuns(sparse, threshold) {
  const runs = [];
  let first = -1, last = -2;
  for (const [frame, p] of sparse) {
    if (!(p > threshold)) continue;
    if (frame === last + 1) { last = frame; continue; }
    if (first >= 0) runs.push([first, last]);
    first = frame; last = frame;
  }
  if (first >= 0) runs.push([first, last]);
  return runs;
}

function scenesAt(sparse, threshold, frameCount) {
  if (frameCount <= 0) return [];
  const scenes = [];
  const runs = sceneRuns(sparse, threshold);
  let start = 0;
  for (const [first, last] of runs) {
    if (first > 0) scenes.push([start + 1, first + 1]);
    start = last + 1;
  }
  if (runs.length === 0 || runs[runs.length - 1][1] < frameCount - 1) scenes.push([start + 1, frameCount]);
  return scenes.length ? scenes : [[1, frameCount]];
}

window.SceneRule = { sceneRuns, scenesAt };
