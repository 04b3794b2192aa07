import pytest


@pytest.fixture
def data_dir():
    """MNIST / Fashion-MNIST folder ($GENDIST_DATA_DIR or ../shared/data)."""
    from experiments._data import default_data_dir

    return default_data_dir()
