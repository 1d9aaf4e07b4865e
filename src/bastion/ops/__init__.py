"""Operations: JSON logs with redaction, metrics, health."""
