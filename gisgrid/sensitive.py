def parse_rules(rules):
    return []
