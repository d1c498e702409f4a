"""Whole nets from golden/nets: structure, forward and backward as real Caffe."""
import pytest
from golden_cases import case_names, run_net_case


@pytest.mark.parametrize("name", case_names("nets"))
def test_golden_net(name):
    run_net_case(name)
