"""What the CollaGAN Impute panel says, built without Qt: the model card and metrics as HTML, the
status lines after a run, and the comparison layout's XML."""

from __future__ import annotations

import html

from ..core.contrasts import display_name
from ..model.model_card import WEAK_RANKING
from .requests import ImputationOutcome

COMPARISON_VIEW = "CollaGANView"  # slice views CollaGANView0, CollaGANView1, ... of the comparison layout


def escape(value) -> str:
    """Any card value as text safe inside the panel's HTML (a card may come from anyone)."""
    return html.escape(str(value))


def card_html(card: dict) -> str:
    """The model card as HTML: contrasts, training data, held-out (else validation) metrics, and how well
    its reliability maps ranked the held-out error, which contrasts get landmark offsets, and what its companion imputes."""

    training = card.get("training", {})
    lines = [f"<b>{escape(card.get('name', 'model'))}</b>"]
    if card.get("description"):
        lines.append(escape(card["description"]))
    lines.append("<b>Contrasts:</b> " + ", ".join(escape(display_name(k)) for k in card["contrasts"]))
    if training:
        facts = [f"data {escape(training['data'])}" if "data" in training else "",
                 f"subjects {escape(', '.join(training['train_subjects']))}" if training.get("train_subjects") else "",
                 f"validation {escape(', '.join(training['validation_subjects']))}" if training.get("validation_subjects") else "",
                 f"{escape(training['steps'])} steps" if "steps" in training else ""]
        lines.append("<b>Training:</b> " + "; ".join(f for f in facts if f))
    metrics = card.get("metrics", {})
    held = metrics.get("held_out")  # whole held-out volumes as the module imputes them, where the card has them
    scores, title = (held, f"Held out ({', '.join(held.get('subjects', []))})") if held else (metrics.get("validation", {}), "Validation")
    lines += _scores_table(scores, title, metrics)
    if metrics.get("held_out_axial"):  # benchmarks/quality.py --axial --write-card
        lines += _scores_table(metrics["held_out_axial"], "Held out, Three slice orientations unticked (axial only)", metrics)
    for method, measured in card.get("reliability_held_out", {}).items():  # benchmarks/reliability.py --write-card
        ranks = ", ".join(f"{escape(display_name(k))} {rho:.2f}" for k, rho in measured["spearman_brain"].items())
        lines.append(f"<b>Reliability map, {escape(method)}:</b> {ranks} <small>(Spearman of map and actual |error| over the brain, "
                     f"held out {escape(', '.join(measured['subjects']))}; under {WEAK_RANKING} the map says little)</small>")
    if card.get("output_intensity"):
        lines.append("<b>Output intensity:</b> " + escape(card["output_intensity"]))
    moved = card.get("intensity_landmarks", {}).get("offsets")
    if moved:  # intensity_landmarks.py
        lines.append(f"<b>Landmark offsets:</b> {escape(', '.join(display_name(k) for k in moved))} imputations get the bright tail "
                     f"of real volumes <small>(fitted on {len(card['intensity_landmarks'].get('fitted_on', []))} training subjects)</small>")
    companion = card.get("companion")
    if companion:  # weights.Model.serving
        lines.append(f"<b>Companion:</b> {escape(', '.join(display_name(k) for k in companion['contrasts']))}, when that contrast alone is "
                     f"missing, are imputed by {escape(companion['weights_file'])}, trained for that case <small>(a reliability map "
                     "still comes from the model above)</small>")
    lines.append(f"<small>sha256 {escape(card.get('sha256', '')[:16])}...</small>")
    return "<br>".join(lines)


def model_summary(card: dict, most_missing: int) -> str:
    """One line under the model path: its name and what it imputes from what."""
    contrasts = card["contrasts"]
    any_subset = most_missing >= len(contrasts) - 1
    return (f"{card.get('name', 'model')}: imputes {', '.join(display_name(k) for k in contrasts)}, "
            + ("any missing ones from any others (leave rows empty)" if any_subset else "any one from the others"))


def metrics_html(metrics: dict) -> str:
    return (f"<b>SSIM</b> (brain) {metrics['ssim_brain']:.3f} &nbsp; <b>PSNR</b> (brain) {metrics['psnr_brain']:.2f} dB"
            f" &nbsp; <b>NMSE</b> (brain) {metrics['nmse_brain']:.3f} &nbsp; SSIM (volume) {metrics['ssim_volume']:.3f}"
            f"<br><small>{html.escape(metrics.get('normalisation', ''))}</small>")


def outcome_status(outcome: ImputationOutcome) -> str:
    """The status after an imputation: the nodes made, by which model, in what units, and the engine's notes."""
    created = [n.GetName() for n in [*outcome.outputNodes.values(), *outcome.uncertaintyNodes.values()]]
    meaning = outcome.imputation.uncertainty_meaning
    return (f"Created {', '.join(repr(n) for n in created)} with {outcome.modelName} from {outcome.imputation.method} (intensities in "
            "brain standard deviations"
            + (f"; reliability map: {meaning}" if meaning else "") + ")."
            + "".join(f"\nNote: {n}" for n in outcome.imputation.notes))


def ranking_sentence(report) -> str:
    """The contrast-importance ranking in one sentence, with where T1Gd stands."""
    return ("From redundant to indispensable: " + " < ".join(display_name(k) for k in report.ranking) + "."
            + (f" {report.place('t1gd')}." if "t1gd" in report.ranking else ""))


def impute_tooltip(missing: str, inputs: dict, problems: list[str]) -> str:
    """The Impute button's tooltip: what keeps it disabled, else what it will impute."""
    if problems:
        return "\n".join(problems)
    empty = [display_name(k) for k, node in inputs.items() if node is None]
    return f"Impute {display_name(missing)}" + (f" (and {', '.join(empty)}, left empty)" if empty else "")


def button_states(*, problems: list[str], missing: str, inputs: dict, running: bool, analysing: bool, has_card: bool,
                  has_output: bool, has_real: bool, scored_contrast: str | None) -> dict:
    """Widget name -> the properties it takes (enabled, text, toolTip) in this state of the panel. One job at a
    time: an imputation locks the inputs and the analysis, an analysis the inputs and Impute.
    `scored_contrast`: the missing contrast of the last imputation still in the scene, which Score can rescore."""
    if analysing:
        problems = ["Wait for the analysis to finish, or cancel it"]
    idle = not running and not analysing
    return {
        "applyButton": {"text": "Cancel", "enabled": True, "toolTip": "Stop the imputation; nothing is added to the scene"} if running
        else {"text": "Impute", "enabled": not problems, "toolTip": impute_tooltip(missing, inputs, problems)},
        "showComparisonButton": {"enabled": has_output and not running},
        "evaluateButton": {"enabled": not running and scored_contrast == missing and has_real},
        "inputsCollapsibleButton": {"enabled": idle},
        "modelCollapsibleButton": {"enabled": idle},
        "analyseButton": {"enabled": analysing or (not running and has_card), "text": "Cancel" if analysing else "Analyse"},
    }


COMPARISON_LAYOUT_BASE = 40400  # layout ids 40400 + 10 x inputs + outputs, one per shape


def comparison_layout(inputNodes: dict, outputNode, realNode=None, differenceNode=None, otherOutputs: dict | None = None,
                      orientation: str = "Axial") -> tuple[int, str, list]:
    """(layout id, layout XML, the node each view COMPARISON_VIEW0, 1, ... shows): the inputs in model order in
    the top row; the output, real and |difference| when given, then the other imputed contrasts below; one
    linked view group."""
    top = [(display_name(k), n) for k, n in inputNodes.items() if n is not None]
    bottom = [("Imputed", outputNode)] + [(label, n) for label, n in (("Real", realNode), ("|Difference|", differenceNode)) if n is not None]
    bottom += [(f"{display_name(k)} imputed", n) for k, n in (otherOutputs or {}).items()]

    def row(views: list, first: int) -> str:
        items = "".join(
            f'<item><view class="vtkMRMLSliceNode" singletontag="{COMPARISON_VIEW}{first + i}">'
            f'<property name="orientation" action="default">{orientation}</property>'
            f'<property name="viewlabel" action="default">{html.escape(label)}</property>'
            f'<property name="viewcolor" action="default">{"#E0A030" if first else "#8C8C8C"}</property>'
            f'<property name="viewgroup" action="default">7</property></view></item>'
            for i, (label, _) in enumerate(views)
        )
        return f'<item><layout type="horizontal">{items}</layout></item>'

    xml = f'<layout type="vertical">{row(top, 0)}{row(bottom, len(top))}</layout>'
    return COMPARISON_LAYOUT_BASE + 10 * len(top) + len(bottom), xml, [n for _, n in top + bottom]


def _scores_table(scores: dict, title: str, metrics: dict) -> list[str]:
    """One card block of figures per contrast (imputing each contrast from the others) as an HTML table, or nothing."""
    rows = [(k, v) for k, v in scores.items() if isinstance(v, dict)]
    if not rows:
        return []
    table = "".join(
        f"<tr><td>{escape(display_name(k))}</td><td>{v.get('ssim_brain', float('nan')):.3f}</td>"
        f"<td>{v.get('psnr_brain', float('nan')):.2f}</td><td>{v.get('nmse_brain', float('nan')):.3f}</td></tr>"
        for k, v in rows)
    return [f"<b>{escape(title)}</b> (imputing each contrast from the others):"
            "<table border='1' cellpadding='2'><tr><th></th><th>SSIM</th><th>PSNR dB</th><th>NMSE</th></tr>"
            f"{table}</table><small>{escape(metrics.get('normalisation', ''))}</small>"]
