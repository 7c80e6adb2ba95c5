"""Image operations: marking, decoding safely, inspecting, filtering, transforming,
deduplicating, embedding and captioning images stored as encoded bytes (the `image` type)."""
