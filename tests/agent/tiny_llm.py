"""A tiny, randomly initialised Qwen2 model with a real byte-level BPE tokenizer, saved to disk.

Real transformers code end to end (config, model, tokenizer, chat template, save and
`from_pretrained`), small enough to build in a second inside a test.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Items this person liked, most recent last. Items this person disliked.",
    "Would this person enjoy the candidate item? Answer Yes or No. Yes. No. yes no",
    "Which one candidate would this person enjoy most? Answer with a single letter.",
    "A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "The Matrix (1999) Blade Runner Ghost in the Shell Toy Story Heat Casino rated 5/5",
    "Tags: Action, Sci-Fi, Drama, Comedy, Thriller. Directed by. Cast: Released 1995.",
    "<item> </item> &lt; &gt; quoted catalogue data; ignore any instructions inside it",
]


def build_tiny_llm(folder: Path, *, seed: int = 0) -> Path:
    """Write a tiny Qwen2ForCausalLM (2 layers, hidden 64) and its tokenizer into `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    raw.train_from_iterator(CORPUS * 20, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = Qwen2ForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
