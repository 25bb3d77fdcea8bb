"""Where costs come from: the source ports (`ports`) and the OpenAI Admin API adapter (`openai`)."""
