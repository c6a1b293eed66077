# -*- coding: utf-8 -*-
# Copyright: overlay-boot developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: subhosts
short_description: The overlay-boot subhosts of given hosts
version_added: 1.0.0
description:
  - Lists the configured and running overlay-boot subhosts of each host in C(hosts) with
    C(overlay-go --json), on the controller's own host or over SSH.
  - Each subhost becomes an inventory host named after C(name_format), connected with
    C(overlayboot.subhosts.overlay_go).
  - Groups made, besides those of C(groups) and C(keyed_groups) - C(subhosts) (all of them),
    C(subhosts_on_HOST) (by host) and C(subhosts_STATE) (by state, for example
    C(subhosts_running) and C(subhosts_stopped)); names are sanitized as Ansible does.
  - The host variable C(overlay_subhost) holds the listing's entry (C(name), C(state), C(leader),
    C(interfaces), C(addresses), C(config), C(unit)) and C(host).
  - The inventory file's name must end with C(subhosts.yml) or C(subhosts.yaml).
author:
  - overlay-boot developers (@overlay-boot)
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin.
    type: str
    required: true
    choices: [overlayboot.subhosts.subhosts]
  hosts:
    description:
      - The hosts whose subhosts to list. Each is a host name or address for C(ssh), or a
        mapping with C(name) (used in group and subhost names) and C(address) (for C(ssh)).
      - C(localhost) (or a mapping with an empty C(address)) is the controller's own host, listed
        without SSH.
    type: list
    elements: raw
    default: [localhost]
  states:
    description:
      - Only subhosts in these states (C(running), C(starting), C(stopping), C(stopped)); all when
        empty.
    type: list
    elements: str
    default: []
  name_format:
    description:
      - The inventory name of a subhost; C({subhost}) is its NAME, C({host}) the host's name.
    type: str
    default: '{subhost}@{host}'
  ssh_user:
    description: The user to log in as on the hosts (C(overlay-go) needs root).
    type: str
    default: root
  ssh_port:
    description: The SSH port of the hosts.
    type: int
    default: 22
  ssh_executable:
    description: The SSH client.
    type: str
    default: ssh
  ssh_args:
    description:
      - Options for C(ssh), as one shell-quoted string; they are also given to the connection
        plugin as C(ansible_overlay_go_ssh_args).
    type: str
    default: -o BatchMode=yes -o ControlMaster=auto -o ControlPersist=60s
  overlay_go_command:
    description: The C(overlay-go) command on the hosts, as one shell-quoted string.
    type: str
    default: overlay-go
'''

EXAMPLES = r'''
# fleet.subhosts.yml
plugin: overlayboot.subhosts.subhosts
hosts:
  - localhost
  - node2.example.org
  - name: node3
    address: 192.0.2.13
states: [running]
keyed_groups:
  - key: overlay_subhost.state
    prefix: state
'''

import json
import shlex
import subprocess

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

CONNECTION = 'overlayboot.subhosts.overlay_go'
LOCAL = ('localhost', '127.0.0.1', '::1', '')


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = 'overlayboot.subhosts.subhosts'

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and \
            path.endswith(('subhosts.yml', 'subhosts.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self.inventory.add_group('subhosts')
        for entry in self.get_option('hosts'):
            host, address = self._host_entry(entry)
            for subhost in self._listing(host, address):
                self._add(host, address, subhost)

    def _host_entry(self, entry):
        if isinstance(entry, dict):
            if 'name' not in entry:
                raise AnsibleParserError('hosts: a mapping needs a name: %r' % (entry,))
            name = to_text(entry['name'])
            return name, to_text(entry.get('address', name) or '')
        name = to_text(entry)
        return name, ('' if name in LOCAL else name)

    def _command(self, address):
        local = shlex.split(self.get_option('overlay_go_command')) + ['--json']
        if not address:
            return local
        ssh = [self.get_option('ssh_executable')] + shlex.split(self.get_option('ssh_args'))
        ssh += ['-T', '-p', str(self.get_option('ssh_port')),
                '-l', self.get_option('ssh_user'), '--', address]
        return ssh + [' '.join(shlex.quote(word) for word in local)]

    def _listing(self, host, address):
        argv = self._command(address)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AnsibleParserError('cannot list the subhosts of %s: %s' % (host, to_native(e)))
        if proc.returncode != 0:
            raise AnsibleParserError('cannot list the subhosts of %s (status %d): %s' % (
                host, proc.returncode, to_native(proc.stderr).strip()))
        try:
            listing = json.loads(to_text(proc.stdout))
        except ValueError as e:
            raise AnsibleParserError('%s: overlay-go --json printed no JSON (%s); is the '
                                     'installed overlay-boot too old?' % (host, to_native(e)))
        wanted = self.get_option('states')
        return [s for s in listing if isinstance(s, dict) and 'name' in s
                and (not wanted or s.get('state') in wanted)]

    def _add(self, host, address, subhost):
        name = self.get_option('name_format').format(subhost=subhost['name'], host=host)
        self.inventory.add_host(name, group='subhosts')
        for group in ('subhosts_on_%s' % host, 'subhosts_%s' % subhost.get('state', 'unknown')):
            group = self._sanitize_group_name(group)
            self.inventory.add_group(group)
            self.inventory.add_child(group, name)
        variables = {
            'ansible_connection': CONNECTION,
            'ansible_host': subhost['name'],
            'ansible_overlay_go_host': address,
            'ansible_overlay_go_user': self.get_option('ssh_user'),
            'ansible_overlay_go_port': self.get_option('ssh_port'),
            'ansible_overlay_go_ssh_executable': self.get_option('ssh_executable'),
            'ansible_overlay_go_ssh_args': self.get_option('ssh_args'),
            'ansible_overlay_go_command': self.get_option('overlay_go_command'),
            'overlay_subhost': dict(subhost, host=host),
        }
        for key, value in variables.items():
            self.inventory.set_variable(name, key, value)
        strict = self.get_option('strict')
        hostvars = self.inventory.get_host(name).get_vars()
        self._set_composite_vars(self.get_option('compose'), hostvars, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option('groups'), hostvars, name,
                                          strict=strict)
        self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, name,
                                       strict=strict)
