# Sourced by the GPU scripts: when the folder .whl/ of the repository ($root, default .) holds wheels
# (pip download --no-deps of the pinned transformers, peft, ... on the development machine, carried to a
# GPU machine that has torch but no network), install them into /tmp/site and put it first on
# PYTHONPATH. Expects $py (the interpreter).
if compgen -G "${root:-.}/.whl/*.whl" >/dev/null; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${root:-.}"/.whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
