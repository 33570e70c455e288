"""From posts to people: location shares, weekly activity grids and routines from predictions.

    result = profile_predictions("preds.parquet", "profile/", ProfileOptions(min_posts=20))

Input: a predictions table as `semloc predict` writes it (CSV, JSONL or Parquet): ``id``,
optional ``user`` and ``created_at`` (canonical ISO 8601 with offset; other forms semloc
reads are accepted too), ``label`` and one calibrated probability column ``p_<location>`` per
location; any further column can be a ``--group``. Rows without probabilities (posts the image
policy skipped) are counted and left out.

What it computes, streaming record batches (pyarrow), so memory does not grow with the number of
rows — it grows with the number of distinct users (``users x 168 x locations`` float32 for the
per-user grids; 50,000 users x 8 locations = 270 MB) and stays put however many posts they wrote:

- population (and per group) location shares by every prevalence estimator the inputs allow,
  with bootstrap intervals (`semloc.prevalence`; the adjusted ones need ``--run`` for the dev
  confusion);
- per user with at least ``min_posts`` posts: the share of each location (mean calibrated
  probability) with a Wilson interval and the number of posts behind it; users below the
  threshold appear in no per-user output, only in the count of users left out;
- an hour-of-day x day-of-week grid per location (expected posts = summed probabilities, and
  the share of the slot's posts), for the population, each group and each user;
- home-like and work-like hours: hours of day whose posts are at least ``lift`` times as likely
  as the average post to be at a home (or work) location.

Hours and days are the poster's wall clock: the offset each ``created_at`` carries (which
``data.timezone`` supplied for naive and epoch times when the posts were read), unless
``timezone`` names one zone to convert every instant to.

Privacy: ``pseudonymise`` replaces every user id in every output by a salted SHA-256 digest; the
salt is never written. Nothing leaves the machine."""

from semloc.profile.accumulate import (
    DAYS,
    SLOTS,
    KeyedSums,
    ProfileAccumulator,
    ProfileOptions,
    hour_profile,
)
from semloc.profile.build import (
    ProfileResult,
    check_accumulated,
    dev_confusion_of,
    grid_table,
    like_hours,
    like_hours_matrix,
    prediction_columns,
    profile_predictions,
    pseudonym,
    write_profile,
)
from semloc.profile.read import FORMATS, iter_prediction_batches, time_slots
from semloc.profile.report import (
    PRIVACY_NOTE,
    format_hours,
    markdown_to_html,
    plot_activity,
    profile_markdown,
)

__all__ = [
    "DAYS",
    "FORMATS",
    "PRIVACY_NOTE",
    "SLOTS",
    "KeyedSums",
    "ProfileAccumulator",
    "ProfileOptions",
    "ProfileResult",
    "check_accumulated",
    "dev_confusion_of",
    "format_hours",
    "grid_table",
    "hour_profile",
    "iter_prediction_batches",
    "like_hours",
    "like_hours_matrix",
    "markdown_to_html",
    "plot_activity",
    "prediction_columns",
    "profile_markdown",
    "profile_predictions",
    "pseudonym",
    "time_slots",
    "write_profile",
]
