/**
 * The placement-stability flag (issue 13): the worker places every snapshot twice, from two disjoint halves
 * of the images, and the API marks a snapshot `unstable` when the two placements land more than a tenth of the
 * map apart (worker/engine/stability.py says why the map decides, not the vectors' cosine). The epoch slider
 * shows a small flag for such an epoch; this module words its tooltip.
 */

import type { SpaceSnapshot } from "../api/types";

/** Why a snapshot's placement is flagged unstable, or null when it is not (or was never measured). */
export function unstableReason(snap: SpaceSnapshot | undefined): string | null {
  if (!snap?.unstable) return null;
  const parts = ["Placement unstable: placed from two halves of the images"];
  if (snap.stability_cosine != null) parts.push(`vectors agree at median cosine ${snap.stability_cosine.toFixed(2)}`);
  if (snap.stability_displacement != null)
    parts.push(`points move ${(100 * snap.stability_displacement).toFixed(0)} % of the map`);
  return parts.join("; ") + ". Read positions of this epoch with care.";
}
