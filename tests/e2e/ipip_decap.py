#!/usr/bin/python3
"""Userspace IPIP / GUE decapsulation for a backend namespace, standing in for the kernel's ipip and
fou modules, which cannot be loaded on these machines. Reads encapsulated packets addressed to this
host from an AF_PACKET socket and writes the inner IPv4 packet into a TUN device, where the kernel
receives it as if it had arrived decapsulated. Usage: ipip_decap.py IFACE LOCAL_ADDR [GUE_PORT]"""
import fcntl
import os
import socket
import struct
import sys

iface, local = sys.argv[1], socket.inet_aton(sys.argv[2])
gue_port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"decap0", IFF_TUN | IFF_NO_PI))
os.system("ip link set decap0 up")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((iface, 0))
print("ready", flush=True)
while True:
    frame = s.recv(65535)
    ip = frame[14:]
    if len(ip) < 20 or ip[16:20] != local:
        continue
    ihl = (ip[0] & 0xF) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[9] == 4:  # IP-in-IP
        os.write(tun, ip[ihl:total])
    elif gue_port and ip[9] == 17 and struct.unpack("!H", ip[ihl + 2:ihl + 4])[0] == gue_port:
        os.write(tun, ip[ihl + 8:total])  # GUE variant 1: the inner IP header follows UDP
