//! cairn's libp2p node: Bitswap 1.2.0 client and server, identify, peer scoring; a
//! network-backed `BlockSource`. Not built yet: see the network issue.
