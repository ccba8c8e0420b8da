"""Random edits of a valid preset give a valid preset or a clear error, never a traceback (issue 2)."""

import copy
import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floydtui.config.preset import dump_toml, preset_from_dict
from floydtui.config.schema import DATASET_FIELDS, TABLES, TOP_LEVEL
from floydtui.errors import FloydError

BASE = tomllib.loads("""
[model]
model_flavour = "i-medium-400m"
[training]
lora_rank = 32
[validation]
validation_resolution = "64,96x64"
[output]
output_dir = "out"
[[datasets]]
id = "d"
instance_data_dir = "imgs"
[[datasets]]
id = "e"
dataset_type = "text_embeds"
cache_dir = "cache"
""")

KEYS = [f.key for fields in TABLES.values() for f in fields]
scalar = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["auto", "lora", "cosine", "64,96", "64x", "ii-large-1.2b",
                                            "builtin:tiny-if-ii", "fp16", "xformers", ""]),
)
value = st.one_of(scalar, st.lists(scalar, max_size=3), st.dictionaries(st.text(max_size=5), scalar, max_size=2))
table_name = st.sampled_from([*TOP_LEVEL, "trainig", "misc"])
key_name = st.one_of(st.sampled_from(KEYS + [f.key for f in DATASET_FIELDS]), st.text(min_size=1, max_size=10))

edit = st.one_of(
    st.tuples(st.just("set"), table_name, key_name, value),
    st.tuples(st.just("dataset"), st.integers(0, 2), key_name, value),
    st.tuples(st.just("drop"), table_name, key_name, st.none()),
    st.tuples(st.just("replace_table"), table_name, st.none(), value),
)


def apply(data, e):
    kind, a, b, v = e
    if kind == "set":
        if not isinstance(data.get(a), dict):
            data[a] = {}
        data[a][b] = v
    elif kind == "dataset":
        ds = data.setdefault("datasets", [])
        if isinstance(ds, list) and ds:
            target = ds[a % len(ds)]
            if isinstance(target, dict):
                target[b] = v
    elif kind == "drop":
        if isinstance(data.get(a), dict):
            data[a].pop(b, None)
        else:
            data.pop(a, None)
    else:
        data[a] = v


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(edit, min_size=1, max_size=4))
def test_random_edits_never_traceback(edits):
    data = copy.deepcopy(BASE)
    for e in edits:
        apply(data, e)
    try:
        preset = preset_from_dict(data)
    except FloydError as err:
        assert err.problems and all(p.message for p in err.problems)
        assert any(p.is_error for p in err.problems)
        return
    # a preset that validates is usable: its derived views work and it survives TOML
    assert preset.validation_sizes
    assert preset.flavour.stage in (1, 2)
    assert preset.base_model
    assert preset.text_embeds_dataset["dataset_type"] == "text_embeds"
    again = preset_from_dict(tomllib.loads(dump_toml(preset.to_dict())))
    assert again.training == preset.training
