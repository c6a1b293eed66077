# -*- coding: utf-8 -*-
# Copyright: overlay-boot developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: overlay_go
short_description: Run tasks inside an overlay-boot subhost through overlay-go
version_added: 1.0.0
description:
  - Runs commands inside a running overlay-boot subhost with C(overlay-go NAME -- CMD), on the
    controller's own host or on a remote host reached over SSH.
  - The subhost needs no SSH server and no systemd inside; its PID 1 starts each command as its
    child, in all the subhost's namespaces and its cgroup.
  - Files are copied and fetched by streaming them through C(overlay-go), so they land in (and
    come from) the subhost's own view of its file system, never the host's.
  - Exit statuses and standard error of the commands are kept; no terminal is allocated unless
    C(pty) asks for one.
author:
  - overlay-boot developers (@overlay-boot)
options:
  remote_addr:
    description:
      - The subhost's NAME.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_overlay_go_subhost
  overlay_host:
    description:
      - The host that runs the subhost, reached with C(ssh). Empty for the controller's own host
        (Ansible then runs C(overlay-go) itself, as root).
    type: str
    default: ''
    vars:
      - name: ansible_overlay_go_host
  overlay_host_user:
    description:
      - The user to log in as on C(overlay_host); C(overlay-go) needs root (see C(overlay_go_command)
        for C(sudo)).
    type: str
    default: root
    vars:
      - name: ansible_overlay_go_user
  overlay_host_port:
    description:
      - The SSH port of C(overlay_host).
    type: int
    default: 22
    vars:
      - name: ansible_overlay_go_port
  ssh_executable:
    description:
      - The SSH client.
    type: str
    default: ssh
    vars:
      - name: ansible_overlay_go_ssh_executable
  ssh_args:
    description:
      - Options for C(ssh), as one shell-quoted string (key files, known hosts, multiplexing...).
    type: str
    default: -o BatchMode=yes -o ControlMaster=auto -o ControlPersist=60s
    vars:
      - name: ansible_overlay_go_ssh_args
  overlay_go_command:
    description:
      - The C(overlay-go) command on the host, as one shell-quoted string; for example
        C(sudo -n overlay-go) when C(overlay_host_user) is not root.
    type: str
    default: overlay-go
    vars:
      - name: ansible_overlay_go_command
  pty:
    description:
      - Allocate a pseudo-terminal for each command on C(overlay_host) (C(ssh -tt)). Standard error
        then arrives mixed into standard output. Not available on the controller's own host.
    type: bool
    default: false
    vars:
      - name: ansible_overlay_go_pty
notes:
  - The subhost must be running (C(remote_addr) is its NAME as C(overlay-go) lists it).
  - Commands run as root inside the subhost; C(become) is not needed there.
'''

EXAMPLES = r'''
# inventory (INI): subhost web1 on this host, subhost db1 on host node2 over SSH
# [subhosts]
# web1 ansible_connection=overlayboot.subhosts.overlay_go
# db1  ansible_connection=overlayboot.subhosts.overlay_go ansible_overlay_go_host=node2.example.org

- hosts: subhosts
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        content: "hello\n"
        dest: /etc/motd
'''

import os
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

CHUNK = 1 << 16


class Connection(ConnectionBase):
    """A subhost reached with overlay-go, locally or on a host over SSH."""

    transport = 'overlayboot.subhosts.overlay_go'
    has_pipelining = True
    has_tty = False

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        self.subhost = None

    def _connect(self):
        if not self._connected:
            self.subhost = self.get_option('remote_addr')
            where = self.get_option('overlay_host') or 'this host'
            display.vvv(u'OVERLAY_GO: subhost %s on %s' % (self.subhost, where),
                        host=self.subhost)
            self._connected = True
        return self

    # -- building command lines -------------------------------------------------------

    def _inside(self, argv):
        """ARGV run inside the subhost, as the argv to run here (maybe through ssh)."""
        local = shlex.split(self.get_option('overlay_go_command')) + [self.subhost, '--'] + argv
        host = self.get_option('overlay_host')
        if not host:
            return local
        ssh = [self.get_option('ssh_executable')] + shlex.split(self.get_option('ssh_args'))
        ssh += ['-tt' if self.get_option('pty') else '-T']
        ssh += ['-p', str(self.get_option('overlay_host_port'))]
        ssh += ['-l', self.get_option('overlay_host_user'), '--', host]
        # ssh hands one string to the remote user's shell: quote every word.
        return ssh + [' '.join(shlex.quote(word) for word in local)]

    def _popen(self, argv, stdin):
        display.vvvv(u'OVERLAY_GO: %s' % to_text(' '.join(shlex.quote(a) for a in argv)),
                     host=self.subhost)
        try:
            return subprocess.Popen([to_bytes(a, errors='surrogate_or_strict') for a in argv],
                                    stdin=stdin, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as e:
            raise AnsibleConnectionFailure('cannot run %s: %s' % (argv[0], to_native(e)))

    # -- the connection interface --------------------------------------------------------

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        argv = self._inside(['/bin/sh', '-c', to_text(cmd)])
        proc = self._popen(argv, subprocess.PIPE if in_data is not None else subprocess.DEVNULL)
        stdout, stderr = proc.communicate(in_data)
        self._check_reached(proc.returncode, stderr)
        return proc.returncode, stdout, stderr

    def _check_reached(self, rc, stderr):
        """ssh's own failures (status 255) are connection failures, not the command's."""
        if rc == 255 and self.get_option('overlay_host'):
            raise AnsibleConnectionFailure('ssh to %s failed: %s' % (
                self.get_option('overlay_host'), to_native(stderr).strip()))

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        self._connect()
        display.vvv(u'PUT %s TO %s' % (in_path, out_path), host=self.subhost)
        if not os.path.exists(to_bytes(in_path, errors='surrogate_or_strict')):
            raise AnsibleFileNotFound('file or module does not exist: %s' % to_native(in_path))
        argv = self._inside(['/bin/sh', '-c', 'exec cat > "$1"', 'put', to_text(out_path)])
        with open(to_bytes(in_path, errors='surrogate_or_strict'), 'rb') as source:
            proc = self._popen(argv, source)
            stdout, stderr = proc.communicate()
        self._check_reached(proc.returncode, stderr)
        if proc.returncode != 0:
            raise AnsibleError('failed to put %s into %s in subhost %s (status %d): %s' % (
                in_path, out_path, self.subhost, proc.returncode, to_native(stderr).strip()))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        self._connect()
        display.vvv(u'FETCH %s TO %s' % (in_path, out_path), host=self.subhost)
        argv = self._inside(['/bin/sh', '-c', 'exec cat -- "$1"', 'fetch', to_text(in_path)])
        proc = self._popen(argv, subprocess.DEVNULL)
        target = to_bytes(out_path, errors='surrogate_or_strict')
        with open(target, 'wb') as sink:
            for chunk in iter(lambda: proc.stdout.read(CHUNK), b''):
                sink.write(chunk)
        stderr = proc.stderr.read()
        proc.wait()
        self._check_reached(proc.returncode, stderr)
        if proc.returncode != 0:
            os.unlink(target)
            raise AnsibleError('failed to fetch %s from subhost %s (status %d): %s' % (
                in_path, self.subhost, proc.returncode, to_native(stderr).strip()))

    def close(self):
        self._connected = False
