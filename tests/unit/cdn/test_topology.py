from cdn.rendezvous import rank
from cdn.topology import ZONES, PortPlan, Secrets, build_plan

SECRETS = Secrets("AK", "SK", "edge-secret", "purge-token", "k1", "sign-secret")


def _plan(shields: int = 2):
    ports = PortPlan(8000)
    lookup = {"edge": ports.edge, "shield": ports.shield, "node": ports.node,
              "origin": lambda _i: ports.origin(), "control": lambda _i: ports.control()}
    return build_plan(data_dir="/d", secrets=SECRETS, database_url="postgresql://db",
                      redis_url="redis://r", port=lambda kind, i: lookup[kind](i),
                      regions=("us-east", "eu-west", "ap-south"), shield_count=shields,
                      node_count=9, signed_buckets=("private",))


def test_nine_nodes_three_per_zone_on_distinct_ports():
    plan = _plan()
    zones = [n.zone for n in plan.nodes]
    assert all(zones.count(z) == 3 for z in ZONES)
    ports = [p.port for p in plan.all]
    assert len(ports) == len(set(ports)) == 9 + 2 + 2 + 3


def test_start_order_is_nodes_then_origin_then_shields_then_edges():
    plan = _plan()
    roles = [[p.role for p in stage] for stage in plan.stages]
    assert roles == [["storage-node"] * 9, ["origin", "control"], ["shield"] * 2, ["edge"] * 3]


def test_edges_know_every_shield_and_shields_know_the_origin():
    plan = _plan()
    for edge in plan.edges:
        shields = edge.args[edge.args.index("--shields") + 1]
        assert shields == "shield-1=http://127.0.0.1:8101,shield-2=http://127.0.0.1:8102"
    for shield in plan.shields:
        assert shield.args[shield.args.index("--origin") + 1] == "http://127.0.0.1:9000"


def test_without_shields_edges_go_straight_to_the_origin():
    edge = _plan(shields=0).edges[0]
    assert "--shields" not in edge.args
    assert edge.args[edge.args.index("--upstream") + 1] == "http://127.0.0.1:9000"


def test_rendezvous_moves_only_the_removed_candidates_keys():
    keys = [f"/b/k{i}" for i in range(500)]
    before = {k: rank(k, ["s1", "s2", "s3"])[0] for k in keys}
    after = {k: rank(k, ["s1", "s3"])[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == "s2" for k in moved)
    share = sum(1 for k in keys if before[k] == "s2") / len(keys)
    assert 0.2 < share < 0.45


def test_secrets_that_start_with_a_dash_reach_every_role_intact():
    """``token_urlsafe`` may start a secret with "-": each role's parser must still read it
    as the value of its flag (``cdn up`` failed now and then before)."""
    import argparse

    from cdn.roles import add_config_arguments
    from control.config import ControlConfig
    from edge.config import EdgeConfig
    from origin.config import OriginConfig
    from shield.config import ShieldConfig

    secrets = Secrets("AK", "-SK", "-edge", "-purge", "k1", "-sign")
    ports = PortPlan(8000)
    lookup = {"edge": ports.edge, "shield": ports.shield, "node": ports.node,
              "origin": lambda _i: ports.origin(), "control": lambda _i: ports.control()}
    plan = build_plan(data_dir="/d", secrets=secrets, database_url="postgresql://db",
                      redis_url="redis://r", port=lambda kind, i: lookup[kind](i),
                      regions=("us-east",), shield_count=1, node_count=9,
                      signed_buckets=("private",))
    configs = {"edge": EdgeConfig, "shield": ShieldConfig, "origin": OriginConfig,
               "control": ControlConfig}
    seen = set()
    for spec in plan.all:
        if spec.role not in configs:
            continue
        parser = argparse.ArgumentParser()
        add_config_arguments(parser, configs[spec.role])
        values = vars(parser.parse_args(list(spec.args)))
        found = {v for v in values.values() if isinstance(v, str) and v.startswith("-")}
        assert found <= {"-SK", "-edge", "-purge"}
        seen |= found
    assert seen == {"-SK", "-edge", "-purge"}
