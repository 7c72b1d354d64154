"""Korean speech: DeepSpeech2 and Whisper speech-to-text, speaker gender, conversation analysis."""

__version__ = "0.1.0"
