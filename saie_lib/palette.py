"""One colour per name, in every figure: conditions (the trained models compared), inference settings, and the
parts of a discussion. A figure looks its colours up here by name, never by position, so `saie` has the same
colour on every figure of the page. Colour-blind-safer pairs: supportive green / adversarial vermilion sit far
apart in lightness; SAIE and its mixed-target variant share a hue."""

from __future__ import annotations

from typing import Any

CONDITION_COLOURS = {
    "base": "#8c8c8c",  # grey: the untrained model
    "none": "#1f77b4",  # blue: conventional fine-tuning
    "placebo": "#b8a04a",  # khaki: the stance-free control
    "supportive": "#2ca02c",  # green
    "adversarial": "#d55e00",  # vermilion
    "saie": "#6a3d9a",  # purple: supportive and adversarial
    "saie_mixed": "#b39ddb",  # light purple: SAIE with the mixed target
    # the scripted partner's conditions: the model partner's hue, darker
    "supportive_scripted": "#145a14",
    "adversarial_scripted": "#7f2704",
    "saie_scripted": "#2d004b",
    "gold": "#000000",
}
SETTING_COLOURS = {
    "individual": "#1f77b4",
    "self_discussion": "#ff7f0e",
    "multi_agent": "#2ca02c",
    "self_consistency": "#8c564b",
    "partner_discussion": "#e377c2",
}
OUTCOME_COLOURS = {"fixed": "#2ca02c", "broke": "#d55e00"}  # a discussion that fixed / broke an answer
# answer letters (A, B, ...): shades of one blue-green ramp, so no letter looks like a condition
LETTER_COLOURS = ("#08306b", "#2171b5", "#6baed6", "#41ab5d", "#a1d99b", "#fdd0a2")
CHANCE_STYLE = {"color": "#444444", "linestyle": ":", "linewidth": 1.2}


def colour(name: str, index: int = 0) -> str:
    """The colour of a condition or setting; an unknown name gets matplotlib's colour cycle by position."""
    return CONDITION_COLOURS.get(name) or SETTING_COLOURS.get(name) or f"C{index % 10}"


def letter_colour(index: int) -> str:
    return LETTER_COLOURS[index % len(LETTER_COLOURS)]


def legend_outside(ax: Any, **options: Any) -> None:
    """The legend to the right of the axes, never over the data (the figure is saved with a tight box)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  borderaxespad=0.0, **options)
