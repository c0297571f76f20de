"""The only way a label comes to exist (writer: validate → sign → sequence → commit → notify) and how committed
labels reach live subscribers (hub). Knows nothing of where labels come from."""
