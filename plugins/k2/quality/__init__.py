"""Great Expectations gates for Bronze, Silver and Gold. GX is imported only inside functions: its
import costs seconds, and DAG files must parse fast."""

from k2.quality.gate import QualityGateFailed, QualityReport, enforce, preload, validate

__all__ = ["QualityGateFailed", "QualityReport", "enforce", "preload", "validate"]
