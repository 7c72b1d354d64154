"""A speech-to-text system to evaluate: engine, model, decoder, LM, optional denoiser front end;
`parse_system` reads the `ENGINE[:MODEL[:DECODER[:LM]]]` spec the evaluation scripts take."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from speech.audio import SAMPLE_RATE
from speech.stt import DECODERS, ENGINES, load_engine


@dataclass
class System:
    engine: str
    model: Optional[str] = None
    decoder: str = "greedy"
    lm: Optional[str] = None
    denoise: bool = False
    name: str = ""

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"Unknown engine {self.engine!r}; engines = {list(ENGINES)}")
        if self.decoder not in DECODERS:
            raise ValueError(f"Unknown decoder {self.decoder!r}; decoders = {list(DECODERS)}")
        if self.engine != "ds2" and (self.decoder != "greedy" or self.lm):
            raise ValueError("--decoder/--lm apply to the ds2 engine only")
        if not self.name:
            label = self.engine + (f" ({self.decoder}{' + LM ' + self.lm if self.lm else ''})"
                                   if self.engine == "ds2" else "")
            self.name = f"{label} {self.model or 'default'}" + (" +denoise" if self.denoise else "")

    def load(self):
        kwargs = dict(decoder=self.decoder, lm=self.lm) if self.engine == "ds2" else {}
        return load_engine(self.engine, model=self.model, **kwargs)


def parse_system(spec: str, decoder: str = "greedy", lm: Optional[str] = None) -> System:
    """'ENGINE[:MODEL[:DECODER[:LM]]]', e.g. 'ds2:checkpoints/ds2-ko:beam', 'ds2:checkpoints/ds2-ko:beam:data/lm/lm.bin'
    or 'whisper:/models/whisper-small'."""
    engine, _, rest = spec.partition(":")
    model, dec = rest or None, decoder
    if rest and ":beam:" in rest:
        model, _, lm = rest.partition(":beam:")
        dec = "beam"
    elif rest and rest.rpartition(":")[2] in DECODERS and ":" in rest:
        model, _, dec = rest.rpartition(":")
    return System(engine=engine, model=model, decoder=dec, lm=lm if engine == "ds2" else None)


def denoise(audio: np.ndarray) -> np.ndarray:
    import noisereduce

    return noisereduce.reduce_noise(y=audio, sr=SAMPLE_RATE).astype(np.float32)
