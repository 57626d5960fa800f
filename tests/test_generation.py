from saie_lib.generation import Decoding, cut_at_stop, generate, render_chat
from saie_lib.prompts import build_messages
from saie_lib.tasks import Example

QUESTIONS = ["What is 2 + 2?", "Name a colour.", "A much longer question about trains leaving stations at noon?",
             "Why?", "Count to three.", "Is water wet? Explain briefly."]


def _prompts(tokenizer):
    examples = [Example(id=str(i), task="gsm8k", question=q, answer="0") for i, q in enumerate(QUESTIONS)]
    return render_chat(tokenizer, [build_messages(e) for e in examples])


def test_batched_greedy_equals_one_by_one(tiny):
    """Left padding and the attention mask must make batching invisible (same greedy text, same order)."""
    model, tokenizer, _ = tiny
    prompts = _prompts(tokenizer)
    decoding = Decoding(max_new_tokens=12)
    batched = generate(model, tokenizer, prompts, decoding, batch_size=4, progress=False)
    single = [generate(model, tokenizer, [p], decoding, batch_size=1, progress=False)[0] for p in prompts]
    assert batched == single
    assert len(set(batched)) > 1  # the prompts really differ


def test_sampling_is_seeded(tiny):
    model, tokenizer, _ = tiny
    prompts = _prompts(tokenizer)[:2]
    first = generate(model, tokenizer, prompts, Decoding(max_new_tokens=8, do_sample=True, seed=1), progress=False)
    again = generate(model, tokenizer, prompts, Decoding(max_new_tokens=8, do_sample=True, seed=1), progress=False)
    assert first == again


def test_sampling_leaves_the_global_rng_alone(tiny):
    import torch

    model, tokenizer, _ = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(model, tokenizer, _prompts(tokenizer)[:1], Decoding(max_new_tokens=4, do_sample=True, seed=9),
             progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_cut_at_stop_takes_earliest():
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == "abc "
    assert cut_at_stop("no stops", ["X"]) == "no stops"
