"""Save and load without pickle: state dicts as ``.npz``; Sequential models as JSON + weights."""


def save(obj, path) -> None:
    raise NotImplementedError


def load(path):
    raise NotImplementedError


def save_model(model, path) -> None:
    raise NotImplementedError


def load_model(path):
    raise NotImplementedError
