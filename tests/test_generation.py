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


def _forward_calls(model):
    """A counter of the model's forward calls (one per decoding step with the KV cache)."""
    calls = []
    original = model.forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    return calls, counting


def test_stop_strings_end_decoding_early_with_the_same_greedy_text(tiny, monkeypatch):
    """A row stops as soon as its text holds a stop string: far fewer decoding steps, and the same text as
    decoding to the end and cutting at the first stop string."""
    model, tokenizer, _ = tiny
    prompts = _prompts(tokenizer)[:4]
    full = generate(model, tokenizer, prompts, Decoding(max_new_tokens=40), batch_size=4, progress=False)
    raw = generate(model, tokenizer, prompts, Decoding(max_new_tokens=40, stop=("\x00never",)), batch_size=4,
                   progress=False)
    assert raw == full
    # a stop string from early in every row's text (random weights: the rows are long streams of tokens)
    stops = tuple(sorted({text[4:7] for text in full if len(text) > 10}))
    assert stops
    calls, counting = _forward_calls(model)
    monkeypatch.setattr(model, "forward", counting)
    early = generate(model, tokenizer, prompts, Decoding(max_new_tokens=40, stop=stops), batch_size=4,
                     progress=False)
    assert early == [cut_at_stop(text, stops).strip() for text in full]
    assert len(calls) < 40


def test_generate_equals_hf_greedy_on_the_same_batch(tiny):
    """Token-count sorting and pre-tokenized batches change nothing: each batch is exactly HF's greedy output."""
    import torch

    model, tokenizer, _ = tiny
    prompts = _prompts(tokenizer)
    ours = generate(model, tokenizer, prompts, Decoding(max_new_tokens=10), batch_size=len(prompts), progress=False)
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        hf = model.generate(**encoded, max_new_tokens=10, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(hf[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ours == [t.strip() for t in texts]


def _stopping_tokenizer(model, tokenizer, prompts):
    """A copy of the tokenizer whose EOS is the fourth token the random model gives the first prompt (its real EOS
    never comes), so that row stops early and the others stop later or not at all."""
    import copy

    import torch

    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts[:1], return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**encoded, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    stopping = copy.deepcopy(tokenizer)
    stopping.eos_token = tokenizer.convert_ids_to_tokens(int(out[0, -1]))
    return stopping


def test_finished_rows_leave_the_batch_with_the_same_text_as_hf_generate(tiny, monkeypatch):
    """Greedy on CPU (saie_lib.greedy_decoding): a row that stopped leaves the batch and the KV cache, later steps
    run fewer rows, and every text is what model.generate gives the same batch."""
    from saie_lib.generation import drops_finished_rows, encode_prompts, generate_batch, hf_generate_batch

    model, tokenizer, _ = tiny
    prompts = _prompts(tokenizer)
    stopping = _stopping_tokenizer(model, tokenizer, prompts)
    ids, decoding = encode_prompts(stopping, prompts), Decoding(max_new_tokens=16)
    assert drops_finished_rows(model, decoding)
    reference = hf_generate_batch(model, stopping, ids, decoding)
    rows_per_step, original = [], model.forward

    def counting(*args, **kwargs):
        rows_per_step.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    ours = generate_batch(model, stopping, ids, decoding)
    assert ours == reference
    assert rows_per_step[0] == len(prompts) and min(rows_per_step) < len(prompts)  # rows did leave
    assert len({len(text) for text in ours}) > 1  # and they stopped at different lengths


def test_sampling_stop_strings_generation_configs_and_unsloth_keep_hf_generate(tiny, monkeypatch):
    import sys
    import types

    from saie_lib.generation import drops_finished_rows

    model, _, _ = tiny
    assert drops_finished_rows(model, Decoding())
    assert not drops_finished_rows(model, Decoding(do_sample=True))
    assert not drops_finished_rows(model, Decoding(stop=("\n",)))
    assert not drops_finished_rows(model, Decoding(max_new_tokens=0))
    monkeypatch.setattr(model.generation_config, "suppress_tokens", [0])  # generate would apply it: keep generate
    assert not drops_finished_rows(model, Decoding())
    monkeypatch.setattr(model.generation_config, "suppress_tokens", None)
    assert drops_finished_rows(model, Decoding())
    monkeypatch.setitem(sys.modules, "unsloth", types.ModuleType("unsloth"))
    assert not drops_finished_rows(model, Decoding())
