"""Packaged yaml defaults (properties/model/*.yaml, properties/dataset/*.yaml) for recbole_embsum."""
