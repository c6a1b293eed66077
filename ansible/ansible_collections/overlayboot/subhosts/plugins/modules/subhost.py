#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: overlay-boot developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: subhost
short_description: Declare, configure, start, stop and remove overlay-boot subhosts
version_added: 1.0.0
description:
  - Manages one overlay-boot subhost on the target host, as systemd unit
    C(overlay-boot@NAME.service) with its configuration C(/etc/overlay-boot/NAME.conf).
  - Creates the subhost's directories C(BASE/live), C(BASE/root) and C(BASE/work).
  - Writes the configuration atomically (root-owned, mode 0644) after checking the new text with
    C(overlay-boot --verify). A configuration that the verifier refuses is reported with the
    verifier's message and never replaces the file in place, so a running subhost is untouched.
  - Reloads systemd when a configuration was written or removed, then starts, stops, restarts,
    enables or disables the unit through C(systemctl).
  - A changed configuration takes effect at the next start; use C(state=restarted) (for
    example from a handler notified by this task) to apply it to a running subhost.
author:
  - overlay-boot developers (@overlay-boot)
requirements:
  - overlay-boot (C(overlay-boot), C(overlay-go)) installed on the target host, booted with systemd.
options:
  name:
    description:
      - The subhost's NAME; its configuration is C(/etc/overlay-boot/NAME.conf).
    type: str
    required: true
  base:
    description:
      - The subhost's directory (absolute path), written as C(BASE=) into the configuration.
      - Required unless C(state=absent).
    type: path
  config:
    description:
      - Variables of the configuration (see C(overlay-boot.conf(5))) and their values, for example
        C(START), C(CABLES), C(RAM_SIZE), C(LOG).
      - The value of C(SHARE) is a list; each item becomes one C(SHARE=) line. Any other list is
        written as one space-separated value.
      - C(NAME) and C(BASE) come from C(name) and C(base) and are not allowed here.
    type: dict
    default: {}
  state:
    description:
      - C(present) writes the configuration and directories but neither starts nor stops the
        subhost.
      - C(started) and C(stopped) start or stop it when needed; C(restarted) always restarts it.
      - C(absent) stops it, disables it and removes its configuration (and, with C(purge), BASE).
    type: str
    choices: [present, started, stopped, restarted, absent]
    default: present
  enabled:
    description:
      - Whether the subhost starts at boot (C(systemctl enable overlay-boot@NAME.service)).
      - Left as it is when not given.
    type: bool
  purge:
    description:
      - With C(state=absent), also remove the whole BASE directory (the subhost's own files).
      - BASE is C(base), or the C(BASE=) of the configuration being removed.
    type: bool
    default: false
attributes:
  check_mode:
    description: Reports what would change (configuration, directories, unit state) without
      changing anything; a new configuration is not verified then.
    support: full
  diff_mode:
    description: Shows the configuration file before and after.
    support: full
notes:
  - Runs as root on the target (use C(become)).
seealso:
  - name: overlay-boot.conf(5)
    description: The configuration variables.
    link: https://manpages.debian.org/overlay-boot
'''

EXAMPLES = r'''
- name: A mail subhost, started now and at boot
  overlayboot.subhosts.subhost:
    name: mta
    base: /srv/subhosts/mta
    config:
      CABLES: br0=
      START: [networking, postfix]
      RAM_SIZE: 50M
      SHARE:
        - /srv/mail:/var/mail
    state: started
    enabled: true
  notify: restart mta

- name: Apply a changed configuration (from a handler)
  overlayboot.subhosts.subhost:
    name: mta
    base: /srv/subhosts/mta
    state: restarted

- name: Remove the subhost and its files
  overlayboot.subhosts.subhost:
    name: mta
    state: absent
    purge: true
'''

RETURN = r'''
name:
  description: The subhost's NAME.
  returned: always
  type: str
  sample: mta
config_path:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/overlay-boot/mta.conf
config_changed:
  description: Whether the configuration file was (or, in check mode, would be) written or removed.
  returned: always
  type: bool
unit:
  description: The systemd unit of the subhost.
  returned: always
  type: str
  sample: overlay-boot@mta.service
active_state:
  description: The unit's ActiveState after the task (predicted in check mode).
  returned: always
  type: str
  sample: active
enabled:
  description: Whether the unit is enabled after the task (predicted in check mode).
  returned: always
  type: bool
verify_message:
  description: The output of C(overlay-boot --verify) for the new configuration.
  returned: when a new configuration was checked
  type: str
  sample: OK mta /etc/overlay-boot/.ansible-abc/mta.conf
'''

import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

CONFIG_DIR = '/etc/overlay-boot'
SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']
HEADER = '# Managed by Ansible (overlayboot.subhosts.subhost); local changes are overwritten.\n'
VARIABLE = re.compile(r'^[A-Z_][A-Z0-9_]*$')
NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_-]{0,11}$')  # overlay-boot.conf(5): NAME


def config_path(name):
    return os.path.join(CONFIG_DIR, name + '.conf')


def unit_of(name):
    return 'overlay-boot@%s.service' % name


def check_name(module, name):
    if not NAME.match(name):
        module.fail_json(msg='name %r is not a valid subhost name (at most 12 letters, digits, '
                             '_ and -, not starting with -)' % name)


def one_value(module, key, value):
    if isinstance(value, bool):
        value = 'yes' if value else 'no'
    text = str(value)
    if '\n' in text or '\r' in text or '\0' in text:
        module.fail_json(msg='config %s: a value must be one line' % key)
    return text


def render(module, base, config):
    """The configuration text for BASE and the CONFIG mapping, in the mapping's order."""
    lines = [HEADER, 'BASE=%s\n' % one_value(module, 'BASE', base)]
    for key, value in config.items():
        if not VARIABLE.match(key):
            module.fail_json(msg='config: %r is not a variable name (A-Z, 0-9, _)' % key)
        if key in ('NAME', 'BASE'):
            module.fail_json(msg='config: %s is set by the %s option' % (key, key.lower()))
        if isinstance(value, list) and key == 'SHARE':
            lines += ['SHARE=%s\n' % one_value(module, key, item) for item in value]
        elif isinstance(value, list):
            lines.append('%s=%s\n' % (key, ' '.join(one_value(module, key, v) for v in value)))
        elif isinstance(value, dict):
            module.fail_json(msg='config %s: a value is a string, a number or a list' % key)
        else:
            lines.append('%s=%s\n' % (key, one_value(module, key, value)))
    return ''.join(lines)


def read_text(path):
    try:
        with open(path, 'r') as f:
            return f.read()
    except (IOError, OSError):
        return None


def declared_base(text):
    for line in (text or '').splitlines():
        if line.startswith('BASE='):
            return line[5:].strip()
    return None


def verify_and_install(module, name, text):
    """Check TEXT with overlay-boot --verify as NAME.conf, then rename it into place.

    The candidate is written into a private hidden directory next to the real file (never
    read by the generator), so the rename is atomic and a refused text leaves nothing behind.
    """
    verifier = module.get_bin_path('overlay-boot', required=True, opt_dirs=SBIN_DIRS)
    if not os.path.isdir(CONFIG_DIR):
        os.makedirs(CONFIG_DIR, 0o755)
    staging = tempfile.mkdtemp(prefix='.ansible-', dir=CONFIG_DIR)
    try:
        candidate = os.path.join(staging, name + '.conf')
        fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chown(candidate, 0, 0)
        os.chmod(candidate, 0o644)
        rc, out, err = module.run_command([verifier, '--verify', candidate])
        message = (out + err).strip()
        if rc != 0:
            module.fail_json(msg='overlay-boot --verify refused the configuration of %s: %s'
                                 % (name, message.replace(candidate, config_path(name))),
                             rc=rc, verify_message=message, config_path=config_path(name))
        os.rename(candidate, config_path(name))
        return message
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def make_base(module, base):
    """Create BASE/{live,root,work}; True when something was (or would be) created."""
    if not os.path.isabs(base):
        module.fail_json(msg='base %r is not an absolute path' % base)
    missing = [d for d in (base, os.path.join(base, 'live'), os.path.join(base, 'root'),
                           os.path.join(base, 'work')) if not os.path.isdir(d)]
    if not module.check_mode:
        for d in missing:
            if not os.path.isdir(d):
                os.makedirs(d, 0o755)
    return missing


class Unit(object):
    """The subhost's systemd unit, through systemctl."""

    def __init__(self, module, name):
        self.module = module
        self.name = unit_of(name)
        self.systemctl = module.get_bin_path('systemctl', required=True)

    def run(self, *args):
        rc, out, err = self.module.run_command([self.systemctl] + list(args))
        if rc != 0:
            message = (err or out).strip()
            self.module.fail_json(msg='systemctl %s failed: %s' % (' '.join(args), message),
                                  rc=rc)
        return out

    def query(self, *args):
        return self.module.run_command([self.systemctl] + list(args))

    def active_state(self):
        rc, out, err = self.query('show', '-P', 'ActiveState', self.name)
        return out.strip() or 'inactive'

    def is_active(self):
        return self.active_state() in ('active', 'activating', 'reloading')

    def is_enabled(self):
        rc, out, err = self.query('is-enabled', self.name)
        return out.strip() in ('enabled', 'enabled-runtime')

    def daemon_reload(self):
        self.run('daemon-reload')


def apply_enabled(module, unit, enabled, result):
    if enabled is None:
        result['enabled'] = unit.is_enabled()
        return
    if unit.is_enabled() != enabled:
        result['changed'] = True
        if not module.check_mode:
            unit.run('enable' if enabled else 'disable', unit.name)
    result['enabled'] = enabled


def apply_state(module, unit, state, result):
    active = unit.is_active()
    if state == 'started' and not active:
        result['changed'] = True
        if not module.check_mode:
            unit.run('start', unit.name)
    elif state == 'stopped' and active:
        result['changed'] = True
        if not module.check_mode:
            unit.run('stop', unit.name)
    elif state == 'restarted':
        result['changed'] = True
        if not module.check_mode:
            unit.run('restart', unit.name)
    if module.check_mode:
        predicted = {'started': 'active', 'restarted': 'active', 'stopped': 'inactive'}
        result['active_state'] = predicted.get(state) or unit.active_state()
    else:
        result['active_state'] = unit.active_state()


def mounted_under(path):
    """Mount points at or below PATH (the overlay of a running subhost, for example)."""
    prefix = os.path.realpath(path).rstrip('/')
    found = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            point = line.split()[4].replace('\\040', ' ')
            if point == prefix or point.startswith(prefix + '/'):
                found.append(point)
    return found


def purge_target(module, old):
    """The BASE to remove with purge (None without purge), checked before anything changes."""
    if not module.params['purge']:
        return None
    base = module.params['base'] or declared_base(old)
    if not base:
        return None
    if not os.path.isabs(base):
        module.fail_json(msg='cannot purge: BASE=%s of the configuration is not an absolute '
                             'path; give the base option' % base)
    if os.path.realpath(base) == '/':
        module.fail_json(msg='refusing to purge base %s' % base)
    return base


def remove(module, name, result):
    path = config_path(name)
    unit = Unit(module, name)
    old = read_text(path)
    base = purge_target(module, old)
    result['diff'] = {'before': old or '', 'after': '', 'before_header': path,
                      'after_header': path}
    if unit.is_active():
        result['changed'] = True
        if not module.check_mode:
            unit.run('stop', unit.name)
    if unit.is_enabled():
        result['changed'] = True
        if not module.check_mode:
            unit.run('disable', unit.name)
    if os.path.lexists(path):
        result['changed'] = result['config_changed'] = True
        if not module.check_mode:
            os.unlink(path)
            unit.daemon_reload()
    if base and os.path.lexists(base):
        result['changed'] = True
        if not module.check_mode:
            if mounted_under(base):
                module.fail_json(msg='not purging %s: still mounted: %s'
                                     % (base, ', '.join(mounted_under(base))))
            shutil.rmtree(base)
    result['active_state'] = 'inactive' if module.check_mode else unit.active_state()
    result['enabled'] = False


def ensure(module, name, result):
    params = module.params
    if not params['base']:
        module.fail_json(msg='base is required unless state is absent')
    path = config_path(name)
    text = render(module, params['base'], params['config'] or {})
    old = read_text(path)
    if make_base(module, params['base']):
        result['changed'] = True
    unit = Unit(module, name)
    if old != text or os.path.islink(path):
        result['changed'] = result['config_changed'] = True
        result['diff'] = {'before': old or '', 'after': text, 'before_header': path,
                          'after_header': path}
        if not module.check_mode:
            result['verify_message'] = verify_and_install(module, name, text)
            unit.daemon_reload()
    elif unit.query('show', '-P', 'NeedDaemonReload', unit.name)[1].strip() == 'yes':
        if not module.check_mode:
            unit.daemon_reload()
    apply_enabled(module, unit, params['enabled'], result)
    if params['state'] == 'present':
        result['active_state'] = unit.active_state()
    else:
        apply_state(module, unit, params['state'], result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            base=dict(type='path'),
            config=dict(type='dict', default={}),
            state=dict(type='str', default='present',
                       choices=['present', 'started', 'stopped', 'restarted', 'absent']),
            enabled=dict(type='bool'),
            purge=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    name = module.params['name']
    check_name(module, name)
    result = dict(changed=False, config_changed=False, name=name, config_path=config_path(name),
                  unit=unit_of(name))
    if module.params['state'] == 'absent':
        remove(module, name, result)
    else:
        ensure(module, name, result)
    if not module._diff:
        result.pop('diff', None)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
